"""The LoRA baseline (PEFT) trained by the kit's trainer: objectives, resume, files, refusals."""
import json

import pytest
import torch

from t2lib.core.experts import ExpertFileError, ExpertMismatchError
from t2lib.methods.lora import LoRAAdapter, LoRAModel, LoRAParams, LoRASettings
from t2lib.methods.reinforce import ReinforceConfig, ReinforceTrainer
from tests.conftest import make_tiny_llama, make_tiny_tokenizer
from tests.test_reinforce import parity_task, reference_task

SETTINGS = LoRASettings(r=4, alpha=8, dropout=0.0, targets="attn")
NEXT_TOKEN = ReinforceConfig(steps=4, batch_size=12, micro_batch_size=6, lr=5e-2, grad_clip=None, schedule="constant",
                             objective="next_token", logprob_reduction="mean", eval_every=2)


def lora_model(seed=0, settings=SETTINGS):
    return LoRAModel(make_tiny_llama(seed=seed), make_tiny_tokenizer(), settings, model_id=f"tiny-{seed}")


def lora_trainer(lora, task, **kwargs):
    """The kit's trainer over the adapter's weights, generating with an HF backend over the adapted model."""
    return ReinforceTrainer(LoRAParams(lora), lora.backend(), task, **kwargs)


def test_the_adapter_sits_on_q_and_v_and_starts_as_the_base_model(tmp_path, one_torch_thread):
    lora = lora_model()
    names = list(lora.params())
    assert names and all(".q_proj." in n or ".v_proj." in n for n in names)
    # per layer: q (A 4x32, B 32x4) and v (A 4x32, B 16x4: two KV heads of 8)
    assert sum(p.numel() for p in lora.params().values()) == 2 * ((4 * 32 + 32 * 4) + (4 * 32 + 16 * 4))
    trainer = lora_trainer(lora, reference_task(), config=NEXT_TOKEN, run_dir=tmp_path / "r", progress=False)
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        on = lora.causal_lm(ids).logits
        with lora.disabled():
            off = lora.causal_lm(ids).logits
    torch.testing.assert_close(on, off)  # B = 0: the adapter adds nothing yet
    assert trainer.targets == names


def test_next_token_lora_learns_and_resumes_to_the_same_adapter(tmp_path, one_torch_thread):
    whole = lora_trainer(lora_model(), reference_task(), config=NEXT_TOKEN, run_dir=tmp_path / "whole",
                        validation=reference_task(), progress=False).train()
    nll = [h["nll"] for h in whole.history if "nll" in h]
    assert nll[-1] < nll[0]
    stopped = lora_trainer(lora_model(), reference_task(), config=NEXT_TOKEN, run_dir=tmp_path / "cut",
                          validation=reference_task(), progress=False)

    class Stop(Exception):
        pass

    def stop_at_two(row):
        if row["step"] == 2:
            raise Stop
    with pytest.raises(Stop):
        stopped.train(on_step=stop_at_two)
    resumed = lora_trainer(lora_model(), reference_task(), config=NEXT_TOKEN, run_dir=tmp_path / "cut",
                          validation=reference_task(), progress=False).train()
    assert resumed.best_step == whole.best_step and resumed.evals == whole.evals
    for n, w in whole.expert.weights.items():
        torch.testing.assert_close(resumed.expert.weights[n], w, rtol=0, atol=1e-6)


def test_policy_gradient_lora_uses_the_reinforce_loop(tmp_path, one_torch_thread):
    config = ReinforceConfig(steps=2, batch_size=6, micro_batch_size=3, lr=5e-2, grad_clip=None,
                             normalize_rewards=True, eval_every=1)
    trainer = lora_trainer(lora_model(), parity_task(), config=config, run_dir=tmp_path / "pg",
                          validation=parity_task(), progress=False)
    before = {n: p.detach().clone() for n, p in trainer.params.items()}
    result = trainer.train()
    rows = [h for h in result.history if "reward" in h]
    assert len(rows) == 2 and all("rollout_s" in r for r in rows)
    assert any(not torch.equal(before[n], p) for n, p in trainer.params.items() if "lora_B" in n)


def test_adapter_files_load_in_peft_and_are_refused_on_other_weights(tmp_path, one_torch_thread):
    from peft import PeftModel

    lora = lora_model()
    trainer = lora_trainer(lora, reference_task(), config=NEXT_TOKEN, run_dir=tmp_path / "r", progress=False)
    adapter = trainer.train().expert
    folder = adapter.save(tmp_path / "lora-math")
    meta = json.loads((folder / "lora.json").read_text())
    assert meta["base_fingerprint"] == lora.base_fingerprint and meta["settings"]["r"] == 4
    again = LoRAAdapter.load(folder)
    assert set(again.weights) == set(adapter.weights) and again.num_params == adapter.num_params
    ids = torch.tensor([[5, 6, 7, 8, 9]])
    with torch.no_grad():
        mine = lora.causal_lm(ids).logits
        peft = PeftModel.from_pretrained(make_tiny_llama(seed=0), str(folder)).eval()
        torch.testing.assert_close(peft(ids).logits, mine, rtol=1e-5, atol=1e-5)
        fresh = lora_model()
        fresh.load(again)
        torch.testing.assert_close(fresh.causal_lm(ids).logits, mine, rtol=1e-5, atol=1e-5)
    with pytest.raises(ExpertMismatchError, match="trained on other base weights"):
        lora_model(seed=3).load(again)
    with pytest.raises(ExpertMismatchError, match="other shapes or targets"):
        lora_model(settings=LoRASettings(r=2, alpha=4, targets="attn")).load(again)
    data = bytearray((folder / "adapter_model.safetensors").read_bytes())
    data[-3] ^= 0xFF
    (folder / "adapter_model.safetensors").write_bytes(bytes(data))
    with pytest.raises(ExpertFileError, match="do not match the sha256"):
        LoRAAdapter.load(folder)
    (folder / "lora.json").unlink()
    with pytest.raises(ExpertFileError, match="lora.json is missing"):
        LoRAAdapter.load(folder)


def test_lora_settings_are_checked():
    with pytest.raises(ValueError, match="unknown target set 'heads'"):
        LoRASettings(targets="heads")
    with pytest.raises(ValueError, match="r >= 1"):
        LoRASettings(r=0)


def test_the_lora_command_line_checks_before_loading_a_model(monkeypatch, capsys):
    from t2lib.cli import lora

    monkeypatch.setattr("t2lib.presets.Preset.load_model", lambda *a, **k: pytest.fail("the model was loaded"))
    for argv, message in ((["--task", "sub_word"], "not a training task of the tiny suite"),
                          (["--task", "add_word", "--lora-targets", "heads"], "invalid choice: 'heads'")):
        with pytest.raises(SystemExit):
            lora.main(argv)
        assert message in capsys.readouterr().err


def test_train_lora_keeps_the_best_learning_rate_and_scores_the_test_split(tmp_path, monkeypatch, one_torch_thread):
    """The whole command on the smoke preset's suite, with the tiny random model standing in."""
    from t2lib.core.models import LoadedModel, ResolvedModel
    from t2lib.presets import get_preset
    from t2lib.runs.training import train_lora

    monkeypatch.setenv("T2_BUILD_DIR", str(tmp_path / "build"))
    monkeypatch.setattr("t2lib.presets.Preset.load_model", lambda self, **k: LoadedModel(
        make_tiny_llama(seed=0), make_tiny_tokenizer(), ResolvedModel("tiny", tmp_path, "local")))
    preset = get_preset("smoke", batch_size=8)
    row = train_lora(preset, "add_word", settings=SETTINGS, lrs=(1e-3, 5e-2), steps=2,
                            out=tmp_path / "lora-math", progress=False)
    assert row["expert"] == "lora-math" and row["lr"] in (1e-3, 5e-2) and row["objective"] == "next_token"
    assert row["n"] == preset.eval_limit and len(row["per_question"]["expert"]) == row["n"]
    assert (tmp_path / "build" / "lora" / "smoke" / "lora-math" / "lr0.001" / "checkpoint.pt").exists()
    saved = LoRAAdapter.load(row["path"])
    assert saved.metrics["test_n"] == row["n"] and saved.config["preset"] == "smoke"


def test_each_category_adapter_is_scored_on_its_unseen_task_like_make_adapt(tmp_path, monkeypatch, one_torch_thread):
    from t2lib.core.models import LoadedModel, ResolvedModel
    from t2lib.paths import experts_dir
    from t2lib.runs.adaptation import score_lora_unseen
    from t2lib.presets import get_preset
    from t2lib.samples import draw_shots, spread_ids

    monkeypatch.setenv("T2_EXPERTS_DIR", str(tmp_path / "experts"))
    monkeypatch.setattr("t2lib.presets.Preset.load_model", lambda self, **k: LoadedModel(
        make_tiny_llama(seed=0), make_tiny_tokenizer(), ResolvedModel("tiny", tmp_path, "local")))
    preset = get_preset("smoke", batch_size=8)
    with pytest.raises(FileNotFoundError, match="no LoRA adapter for math, code, reasoning"):
        score_lora_unseen(preset, progress=False)
    for category in preset.suite_spec.categories:
        lm = preset.load_model()
        lora = LoRAModel(lm.model, lm.tokenizer, SETTINGS, model_id="tiny")
        trainer = lora_trainer(lora, reference_task(), config=NEXT_TOKEN, run_dir=tmp_path / category, progress=False)
        trainer.artifact(trainer.params).save(experts_dir(preset.expert_set) / f"lora-{category}")
    result = score_lora_unseen(preset, progress=False)
    assert [r["strategy"] for r in result["rows"]] == ["lora"] * 3
    for r in result["rows"]:
        task = preset.task(r["task"], "test")
        _, rest = draw_shots(task.ids, preset.cem.shots, seed=preset.cem.shot_seed(r["task"]))
        assert result["per_question"][r["task"]]["ids"] == list(spread_ids(rest, preset.eval_limit))  # adapt's questions
        assert r["accuracy"] == pytest.approx(sum(result["per_question"][r["task"]]["lora"]) / r["n"], abs=1e-4)


def test_lora_rows_join_table_1_beside_svf():
    from t2lib.views.paper import kit_table1_rows

    rows = [{"expert": "lora-math", "task": "add_word", "n": 4, "base_accuracy": 0.25, "expert_accuracy": 0.5},
            {"expert": "math", "task": "add_word", "n": 4, "base_accuracy": 0.25, "expert_accuracy": 0.75}]
    pq = {"lora-math": {"ids": list("abcd"), "base": [1, 0, 0, 0], "expert": [1, 1, 0, 0]}}
    lora = kit_table1_rows(rows, source="kit", method="lora", per_question=pq)
    assert [(r["method"], r["category"], r["accuracy"]) for r in lora] == [("lora", "math", 50.0)]
    assert lora[0]["gain_interval"].startswith("paired")
    assert [r["method"] for r in kit_table1_rows(rows, source="kit")] == ["base", "svf"]


def test_svf_and_lora_are_two_implementations_of_one_trainable_interface(tmp_path, one_torch_thread):
    """The trainer sees one small interface; both methods implement every member of it, and the
    neutral params of each leave the base model's answers unchanged."""
    from t2lib.methods.trainable import SVFParams, Trainable
    from tests.conftest import make_tiny_svf

    members = {n for n in vars(Trainable) if not n.startswith("_")} | set(Trainable.__annotations__)
    svf_params, lora_params = SVFParams(make_tiny_svf()[0]), LoRAParams(lora_model())
    for method in (svf_params, lora_params):
        method.start(NEXT_TOKEN)
        assert all(hasattr(method, m) for m in members), [m for m in members if not hasattr(method, m)]
        ids = torch.tensor([[5, 6, 7, 8]])
        with torch.no_grad():
            with method.answering(None):
                base = method.model(ids).logits
            with method.answering(method.neutral()):
                neutral = method.model(ids).logits
        torch.testing.assert_close(neutral, base)
