"""The REINFORCE trainer on a random-init tiny Llama: gradients, updates, checkpoints, resume."""
from __future__ import annotations

import json

import pytest
import torch

from fishfarm.task import Task
from fishfarm.types import LogprobRequest, SamplingParams, Score
from t2lib.core.experts import effective_scale
from t2lib.methods.trainable import SVFParams
from t2lib.methods.reinforce import ReinforceConfig, ReinforceTrainer, advantages
from t2lib.samples import batch_ids
from tests.conftest import make_tiny_svf

WORDS = ["cat", "dog", "sun", "map", "pen", "cup", "hat", "box", "owl", "fig", "jam", "kit"]


def parity_task(name="toy", words=WORDS, always_wrong=False) -> Task:
    """Even samples are 'correct' whatever the answer: rewards vary, so every step learns."""
    records = [{"id": str(i), "q": w} for i, w in enumerate(words)]
    return Task(name, records, id_field="id", prompt=lambda r: f"Say {r['q']}",
                scorer=lambda a, r: Score(correct=not always_wrong and int(r["id"]) % 2 == 0),
                sampling=SamplingParams(max_new_tokens=5))


def build(tmp_path, *, seed=0):
    return make_tiny_svf(seed=seed)


def trainer(tmp_path, config, *, run="run", validation=None, task=None, data_version=None):
    svf, backend = build(tmp_path)
    return ReinforceTrainer(SVFParams(svf), backend, task or parity_task(), config=config, run_dir=tmp_path / run,
                            validation=validation, progress=False, data_version=data_version)


CONFIG = ReinforceConfig(steps=4, batch_size=6, micro_batch_size=4, lr=5e-2, grad_clip=None,
                         normalize_rewards=True, eval_every=2, schedule="cosine")


def perturbed_z(svf, parameterization):
    """Returns z a little away from the base (so the KL term has a gradient)."""
    return {n: torch.full_like(f.S, 1.0 if parameterization == "direct" else 0.1)
            + 0.05 * torch.randn(f.S.shape, generator=torch.Generator().manual_seed(i))
            for i, (n, f) in enumerate(svf.decomp.items())}


def reference_gradient(svf, backend, z0, requests, adv, *, reduction, kl_coef, parameterization):
    """Per-sample loop through the whole model's logits, as the official code does."""
    z = {n: torch.nn.Parameter(v.clone()) for n, v in z0.items()}
    for i, req in enumerate(requests):
        weights = {n: svf.decomp[n].compose(effective_scale(v, svf.decomp[n].S, parameterization))
                   for n, v in z.items()}
        prompt = backend.encode(req.prompt)
        ids = torch.tensor([prompt + list(req.continuation_ids)])
        logits = svf.forward(weights, input_ids=ids).logits[0].float()
        logp = torch.log_softmax(logits[len(prompt) - 1:-1], -1)
        tok = logp.gather(1, torch.tensor(req.continuation_ids)[:, None])[:, 0]
        seq = tok.mean() if reduction == "mean" else tok.sum()
        loss = -adv[i] * seq / len(requests)
        if kl_coef:
            with torch.no_grad():
                base = torch.log_softmax(svf.model(input_ids=ids).logits[0, len(prompt) - 1:-1].float(), -1)
            per_token = (logp.exp() * (logp - base)).sum(-1)
            loss = loss + kl_coef * (per_token.mean() if reduction == "mean" else per_token.sum()) / len(requests)
        loss.backward()
    return z


@pytest.mark.parametrize("reduction,kl_coef,parameterization,micro", [
    ("mean", 0.0, "direct", 2), ("sum", 0.0, "sigmoid", 5), ("mean", 0.3, "direct", 3), ("sum", 0.2, "direct", 4)])
def test_micro_batched_gradient_matches_a_per_sample_loop(tmp_path, one_torch_thread, reduction, kl_coef,
                                                          parameterization, micro):
    config = ReinforceConfig(micro_batch_size=micro, logprob_reduction=reduction, kl_coef=kl_coef,
                             parameterization=parameterization)
    t = trainer(tmp_path, config)
    z0 = perturbed_z(t.trained.svf, parameterization)
    with torch.no_grad():
        for n, p in t.params.items():
            p.copy_(z0[n])
    task = t.task
    requests = [task.request(s).prompt for s in task.ids[:5]]
    conts = [(5, 9, 11), (20, 3), (40, 41, 42, 43), (7,), (60, 61)]  # uneven lengths: padding matters
    lp_requests = [LogprobRequest(p, continuation_ids=c) for p, c in zip(requests, conts)]
    adv = torch.tensor([1.0, -1.0, 0.5, 2.0, -0.7])
    t.accumulate_gradient(lp_requests, adv)
    expected = reference_gradient(t.trained.svf, t.backend, z0, lp_requests, adv, reduction=reduction, kl_coef=kl_coef,
                                  parameterization=parameterization)
    for n in t.params:
        assert t.params[n].grad.abs().sum() > 0
        torch.testing.assert_close(t.params[n].grad, expected[n].grad, rtol=1e-4, atol=1e-6)
    assert all(not p.requires_grad for p in t.trained.svf.model.parameters())


def test_kl_is_zero_at_the_base_and_grows_when_z_moves(tmp_path, one_torch_thread):
    t = trainer(tmp_path, ReinforceConfig(kl_coef=1.0, micro_batch_size=4, logprob_reduction="mean"))
    reqs = [LogprobRequest(t.task.request(s).prompt, continuation_ids=(5, 6, 7)) for s in t.task.ids[:4]]
    adv = torch.zeros(4)

    def kl():
        _, total = t.accumulate_gradient(reqs, adv)
        return total

    assert abs(kl()) < 1e-5
    with torch.no_grad():
        for p in t.params.values():
            p.mul_(1.3)
    assert kl() > 1e-3


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_one_step_moves_the_log_prob_of_a_rewarded_answer_in_the_reward_direction(tmp_path, one_torch_thread,
                                                                                  sign):
    t = trainer(tmp_path, ReinforceConfig(lr=1e-2, grad_clip=None, schedule="constant"))
    req = LogprobRequest(t.task.request("0").prompt, continuation_ids=(30, 31, 32))

    def logprob():
        t.trained.svf.write_z(t.params)
        value = float(t.backend.logprobs([req]).sums[0])
        t.trained.svf.restore()
        return value

    before = logprob()
    t.accumulate_gradient([req], torch.tensor([sign]))
    t.optimizer.step()
    assert (logprob() - before) * sign > 0


def test_grad_clip_caps_the_update(tmp_path, one_torch_thread):
    t = trainer(tmp_path, ReinforceConfig(batch_size=6, grad_clip=1e-6, lr=1e-3, normalize_rewards=True))
    row = t.step(t.task.ids[:6], step=1)
    assert row["grad_norm"] > 1e-6  # the norm before clipping is reported
    assert all(p.grad is None for p in t.params.values())


def test_batch_ids_are_seeded_epochs_without_repeats():
    ids = [str(i) for i in range(10)]
    first_epoch = batch_ids(ids, 1, 5, 7) + batch_ids(ids, 2, 5, 7)
    assert sorted(first_epoch) == sorted(ids)
    assert batch_ids(ids, 3, 5, 7) != batch_ids(ids, 1, 5, 7)
    assert batch_ids(ids, 3, 5, 7) == batch_ids(ids, 3, 5, 7)
    assert len(batch_ids(ids, 1, 25, 7)) == 25  # a batch larger than the task spans epochs


def test_advantages():
    r = torch.tensor([1.0, -1.0, -1.0, -1.0])
    assert torch.equal(advantages(r, normalize=False), r)
    a = advantages(r, normalize=True)
    assert abs(float(a.mean())) < 1e-6 and abs(float(a.std(unbiased=False)) - 1) < 1e-5
    assert torch.equal(advantages(torch.ones(3), normalize=True), torch.zeros(3))


def _rows(path):
    drop = ("rollout_s", "update_s", "gradient_s", "train_s")
    return [{k: v for k, v in json.loads(line).items() if k not in drop} for line in path.read_text().splitlines()]


def test_interrupted_run_resumes_to_the_same_expert(tmp_path, one_torch_thread):
    validation = parity_task("toy-val", WORDS[:4])
    straight = trainer(tmp_path, CONFIG, run="straight", validation=validation).train()

    def interrupt(row):
        if row["step"] == 2:
            raise KeyboardInterrupt

    first = trainer(tmp_path, CONFIG, run="resumed", validation=validation)
    with pytest.raises(KeyboardInterrupt):
        first.train(on_step=interrupt)
    assert first.trained.svf.fingerprint_matches_base()  # the live weights went back to the base model
    # A line written after the last checkpoint (a crash between the two) is dropped on resume.
    with open(tmp_path / "resumed" / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"step": 3, "reward": 9}) + "\n")
    second = trainer(tmp_path, CONFIG, run="resumed", validation=validation)
    resumed = second.train()
    assert second.step_done == 4
    for n in straight.expert.z:
        assert torch.equal(straight.expert.z[n], resumed.expert.z[n])
    assert straight.best_step == resumed.best_step
    assert _rows(tmp_path / "straight" / "metrics.jsonl") == _rows(tmp_path / "resumed" / "metrics.jsonl")
    moved = max(float((v - 1).abs().max()) for v in resumed.expert.z.values())
    assert moved > 1e-3 or resumed.best_step == 0


def test_a_checkpoint_with_other_settings_is_refused(tmp_path, one_torch_thread):
    trainer(tmp_path, ReinforceConfig(steps=1, batch_size=2, eval_every=1)).train()
    other = trainer(tmp_path, ReinforceConfig(steps=1, batch_size=2, eval_every=1, lr=1e-1))
    with pytest.raises(ValueError, match="config.lr.*--fresh"):
        other.train()
    other.train(fresh=True)
    assert other.step_done == 1


def test_a_checkpoint_of_another_version_of_the_data_is_refused(tmp_path, one_torch_thread):
    """A suite file's task of the same name and size, from another version of the file or its data."""
    config = ReinforceConfig(steps=2, batch_size=2, eval_every=1)
    first = {"sha256": "a" * 64, "data_sha256": {"toy": {"train": "b" * 64}}}
    interrupted = trainer(tmp_path, config, data_version=first)
    with pytest.raises(KeyboardInterrupt):
        interrupted.train(on_step=lambda row: (_ for _ in ()).throw(KeyboardInterrupt))
    edited = {**first, "data_sha256": {"toy": {"train": "c" * 64}}}
    with pytest.raises(ValueError, match="other settings \\(data_version\\).*--fresh"):
        trainer(tmp_path, config, data_version=edited).train()
    resumed = trainer(tmp_path, config, data_version=first)
    resumed.train()
    assert resumed.step_done == 2


def test_no_improvement_on_validation_gives_the_identity_expert(tmp_path, one_torch_thread):
    validation = parity_task("never", WORDS[:3], always_wrong=True)
    result = trainer(tmp_path, ReinforceConfig(steps=2, batch_size=4, eval_every=1, lr=0.1),
                     validation=validation).train()
    assert result.best_step == 0
    assert all(torch.equal(v, torch.ones_like(v)) for v in result.expert.z.values())
    assert [e["step"] for e in result.evals] == [0, 1, 2]
    assert result.expert.metrics["val_base_accuracy"] == 0.0


def test_bad_config_names_the_field():
    with pytest.raises(ValueError, match="optimizer.*adamw"):
        ReinforceConfig(optimizer="sgd")
    with pytest.raises(ValueError, match="batch_size"):
        ReinforceConfig(batch_size=0)


def test_bf16_autocast_gradient_points_the_same_way(tmp_path, one_torch_thread):
    grads = {}
    for dtype in (None, "bfloat16"):
        t = trainer(tmp_path, ReinforceConfig(micro_batch_size=3, grad_dtype=dtype), run=str(dtype))
        reqs = [LogprobRequest(t.task.request(s).prompt, continuation_ids=(30, 31, 32 + i))
                for i, s in enumerate(t.task.ids[:5])]
        t.accumulate_gradient(reqs, torch.tensor([1.0, -1.0, 0.5, -0.5, 1.0]))
        grads[dtype] = torch.cat([p.grad.flatten() for p in t.params.values()])
        assert all(p.dtype == torch.float32 for p in t.params.values())
    cos = torch.nn.functional.cosine_similarity(grads[None], grads["bfloat16"], dim=0)
    assert cos > 0.98 and not torch.equal(grads[None], grads["bfloat16"])


def test_eager_attention_for_the_gradient_pass_gives_the_same_gradient_and_is_undone(tmp_path, one_torch_thread):
    grads = {}
    for attention in (None, "eager"):
        t = trainer(tmp_path, ReinforceConfig(micro_batch_size=2, grad_attention=attention), run=str(attention))
        before = t.trained.svf.model.config._attn_implementation
        reqs = [LogprobRequest(t.task.request(s).prompt, continuation_ids=(30, 31 + i)) for i, s in enumerate(t.task.ids[:3])]
        t.accumulate_gradient(reqs, torch.tensor([1.0, -1.0, 0.5]))
        assert t.trained.svf.model.config._attn_implementation == before
        grads[attention] = torch.cat([p.grad.flatten() for p in t.params.values()])
    torch.testing.assert_close(grads[None], grads["eager"], rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("flags,want", [("fpu avx512f avx512_bf16 amx_tile", "bfloat16"),
                                        ("fpu avx512f amx_bf16", "bfloat16"),
                                        ("fpu avx512f avx512bw", None)])
def test_auto_grad_dtype_uses_bf16_only_where_the_cpu_has_it(tmp_path, monkeypatch, flags, want):
    from t2lib import hardware as reinforce
    info = tmp_path / "cpuinfo"
    info.write_text(f"processor : 0\nflags\t\t: {flags}\n")
    monkeypatch.setattr(reinforce, "CPUINFO", info)
    assert reinforce.resolve_grad_dtype("auto", "cpu") == want
    assert reinforce.resolve_grad_dtype("bfloat16", "cpu") == "bfloat16"
    assert reinforce.resolve_grad_dtype(None, "cpu") is None
    monkeypatch.setattr(reinforce, "CPUINFO", tmp_path / "missing")
    assert reinforce.resolve_grad_dtype("auto", "cpu") is None


def reference_task(name="ref") -> Task:
    records = [{"id": str(i), "q": w, "ref": w.upper()} for i, w in enumerate(WORDS)]
    return Task(name, records, id_field="id", prompt=lambda r: f"Say {r['q']}",
                scorer=lambda a, r: Score(correct=a.strip() == r["ref"]), sampling=SamplingParams(max_new_tokens=5),
                reference=lambda r: r["ref"])


def test_next_token_loss_is_the_hand_computed_negative_log_likelihood(tmp_path):
    config = ReinforceConfig(steps=1, batch_size=3, micro_batch_size=2, lr=1e-2, grad_clip=None,
                             objective="next_token", logprob_reduction="sum")
    t = trainer(tmp_path, config, task=reference_task())
    ids = t.task.ids[:3]
    expected = 0.0
    with torch.no_grad():
        for s in ids:
            prompt = t.backend.encode(t.task.request(s).prompt)
            answer = t.backend.tokenizer(t.task.reference_answer(s), add_special_tokens=False)["input_ids"]
            answer = answer + [t.backend.tokenizer.eos_token_id]  # the answer ends the turn
            logits = t.trained.svf.model(torch.tensor([prompt + answer])).logits[0].float()
            logp = torch.log_softmax(logits[len(prompt) - 1:-1], -1)
            expected -= float(logp.gather(1, torch.tensor(answer)[:, None]).sum()) / len(ids)
    z0 = {n: p.detach().clone() for n, p in t.params.items()}
    row = t.step(ids, step=1)
    assert row["nll"] == pytest.approx(expected, rel=1e-4) and "reward" not in row
    assert any(not torch.equal(z0[n], p) for n, p in t.params.items())  # z moved


def test_next_token_training_lowers_the_reference_loss_and_needs_references(tmp_path):
    config = ReinforceConfig(steps=6, batch_size=6, micro_batch_size=6, lr=5e-2, grad_clip=None,
                             objective="next_token", logprob_reduction="mean", schedule="constant")
    t = trainer(tmp_path, config, task=reference_task(), validation=reference_task())
    result = t.train()
    nll = [h["nll"] for h in result.history if "nll" in h]
    assert len(nll) == 6 and nll[-1] < nll[0]
    with pytest.raises(ValueError, match="task 'toy' has no reference answers, which next-token training needs"):
        trainer(tmp_path, config, run="other")  # parity_task has none
    with pytest.raises(ValueError, match="objective='sft'"):
        ReinforceConfig(objective="sft")
