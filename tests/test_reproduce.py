"""`make reproduce`: the needs checked before long work, the plan, training only what is missing,
the paper classification task and the rehearsal preset."""
import time

import pytest

from fishfarm.suites import get_suite
from t2lib.cli import reproduce as reproduce_cli
from t2lib.cli import train
from t2lib.runs import preflight as reproduce
from t2lib.presets import get_preset


@pytest.fixture
def no_hub_no_gpu(monkeypatch):
    """This machine as CI sees it, whatever it is: no hub answers and no CUDA GPU."""
    import huggingface_hub
    import torch

    def unreachable(*args, **kwargs):
        raise ConnectionError("no network")
    monkeypatch.setattr(huggingface_hub, "snapshot_download", unreachable)
    monkeypatch.setattr(huggingface_hub.HfApi, "model_info", unreachable)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def test_paper_preset_stops_within_seconds_naming_the_model_the_gpu_and_the_fixes(no_hub_no_gpu, capsys):
    started = time.perf_counter()
    with pytest.raises(SystemExit) as stop:
        reproduce_cli.main(["--preset", "paper"])
    assert stop.value.code == 2 and time.perf_counter() - started < 30
    err = capsys.readouterr().err
    assert "preset paper cannot run here" in err
    assert "model: meta-llama/Meta-Llama-3-8B-Instruct" in err and "huggingface-cli download" in err
    assert "gpu: no CUDA GPU; preset paper needs one with 70 GiB" in err and "PRESET=rehearsal" in err


def test_cpu_presets_pass_the_checks_with_the_offline_model(no_hub_no_gpu):
    for name in ("tiny", "rehearsal"):
        checks = {c.name: c for c in reproduce.require(get_preset(name))}
        assert checks["model"].ok and "offline package" in checks["model"].detail
        assert checks["gpu"].ok and checks["disk"].ok


def test_svd_cache_size_is_counted_from_the_shapes():
    llama = reproduce.KNOWN_SHAPES["meta-llama/Meta-Llama-3-8B-Instruct"]
    size = reproduce.svd_cache_bytes(get_preset("paper"), llama)  # bf16 factors of 96 MLP matrices
    assert size == 32 * 3 * (14336 * 4096 + 4096 + 4096 * 4096) * 2 and 13 < size / 2**30 < 14
    smol = reproduce.svd_cache_bytes(get_preset("tiny"), reproduce.KNOWN_SHAPES["HuggingFaceTB/SmolLM2-135M-Instruct"])
    assert smol == 30 * 3 * (1536 * 576 + 576 + 576 * 576) * 4


def test_the_plan_lists_missing_experts_then_every_notebook(tmp_path, monkeypatch, no_hub_no_gpu, capsys):
    monkeypatch.setenv("T2_EXPERTS_DIR", str(tmp_path))
    (tmp_path / "math.safetensors").write_bytes(b"")  # the math expert counts as there
    steps = reproduce.plan(get_preset("paper"))
    trained = [s.command.split("--task ")[1] for s in steps if "t2lib train" in s.command]
    assert trained == ["mbpp", "arc_easy", "classification"]
    assert [s.what.split()[-1] for s in steps if "notebooks" in s.command][0] == "00_quickstart"
    assert all(s.minutes > 0 and s.basis.startswith("estimate") for s in steps)
    assert reproduce_cli.main(["--preset", "paper", "--plan"]) == 0
    out = capsys.readouterr().out
    assert "MISSING model" in out and "MISSING gpu" in out and "in all" in out


def test_missing_trains_only_what_the_expert_folder_lacks(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("T2_EXPERTS_DIR", str(tmp_path))
    for name in ("math", "code", "reasoning", "classification"):
        (tmp_path / f"{name}.safetensors").write_bytes(b"")
    monkeypatch.setattr("t2lib.session.Session", lambda *a, **k: pytest.fail("nothing is missing: no model load"))
    assert train.main(["--preset", "rehearsal", "--all", "--missing"]) == 0
    assert "none, all are there" in capsys.readouterr().out
    (tmp_path / "code.safetensors").unlink()
    trained = []
    monkeypatch.setattr("t2lib.session.Session", lambda preset: __import__("types").SimpleNamespace(preset=preset))
    monkeypatch.setattr("t2lib.runs.training.train_expert", lambda session, task, **kw: trained.append(task) or
                        {"expert": "code", "task": task, "val_accuracy": 0.0, "best_step": 0, "train_seconds": 0.0, "path": "p"})
    assert train.main(["--preset", "rehearsal", "--all", "--missing", "--no-test"]) == 0
    assert trained == ["mbpp"]


def test_the_paper_classification_task_comes_from_training_tasks_train_splits_only():
    from fishfarm.data import load

    paper = get_suite("paper")
    splits = {s: paper.task("classification", s) for s in ("train", "validation", "test")}
    ids = {s: set(t.ids) for s, t in splits.items()}
    assert not (ids["train"] & ids["test"]) and not (ids["train"] & ids["validation"]) and not (ids["validation"] & ids["test"])
    for split, per_category in (("test", 40), ("validation", 16)):
        cats = [splits[split].record(i)["category"] for i in splits[split].ids]
        assert {c: cats.count(c) for c in set(cats)} == {"math": per_category, "code": per_category, "reasoning": per_category}
    train_ids = {f"{name}:{r.id}" for name in paper.training.values() for r in load(name, "train").records}
    test_ids = {f"{name}:{r.id}" for name in paper.training.values() for r in load(name, "test").records}
    every = {i.removeprefix("cls-") for s in ids.values() for i in s}
    assert every <= train_ids and not every & test_ids
    assert splits["test"].sampling.max_new_tokens == 8


def test_the_rehearsal_preset_takes_the_paper_paths_with_tiny_budgets():
    r, paper = get_preset("rehearsal"), get_preset("paper")
    assert r.suite == paper.suite == "paper" and r.model_source == "offline"
    assert r.train.parameterization == paper.train.parameterization == "sigmoid"
    assert len(r.train_kl_sweep) > 1 and r.dispatch_mode == paper.dispatch_mode == "generate"
    assert r.cem.per_layer and r.cem.elite_ratio == paper.cem.elite_ratio
    assert r.train.normalize_rewards == paper.train.normalize_rewards and r.train.schedule == paper.train.schedule
    assert "classification" in r.suite_spec.trainable and r.gpu_memory_gib is None


def test_the_70b_preset_asks_for_eight_gpus_and_shards_both_engines(no_hub_no_gpu):
    preset = get_preset("paper-70b")
    assert preset.device_map == "auto" and preset.gpus == 8 and preset.expert_set == "paper-70b"
    assert preset.backend_options["vllm"]["tensor_parallel_size"] == 8
    checks = {c.name: c for c in reproduce.preflight(preset)}
    assert not checks["gpu"].ok and "needs 8 GPUs with 70 GiB each" in checks["gpu"].detail
    assert "8 80 GB GPUs" in checks["gpu"].fix
    size = reproduce.svd_cache_bytes(preset, reproduce.KNOWN_SHAPES[preset.model])
    assert 130 < size / 2**30 < 140  # bf16 factors of 240 MLP matrices (28672 x 8192)
