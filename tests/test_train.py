"""The training CLI on the real default model (smoke preset), and the shipped experts."""
import csv
import json

import pytest
import torch

from t2lib.core.experts import Expert
from t2lib.paths import EXPERTS_DIR
from t2lib.presets import get_preset
from t2lib.methods.reinforce import read_metrics
from t2lib.cli.train import main
from t2lib.runs.tables import merge_table1
from t2lib.runs.training import compare_recorded


@pytest.mark.integration
def test_cli_trains_saves_and_resumes(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("T2_FIGURES_DIR", str(tmp_path / "figures"))
    args = ["--preset", "smoke", "--task", "add_word", "--out", str(tmp_path / "math"),
            "--run-dir", str(tmp_path / "run"), "--grad-dtype", "none"]
    assert main(args) == 0
    expert = Expert.load(tmp_path / "math")
    meta = json.loads((tmp_path / "math.json").read_text())
    assert meta["config"]["task"] == "add_word" and meta["config"]["steps"] == 2
    # the dtype asked for and the one it resolved to on this machine are both recorded
    assert meta["config"]["grad_dtype"] is None and meta["config"]["grad_dtype_resolved"] is None
    assert {"test_accuracy", "test_base_accuracy", "val_accuracy", "evals"} <= set(meta["metrics"])
    rows = read_metrics(tmp_path / "run")
    assert [r["step"] for r in rows] == [0, 1, 2] and "val_accuracy" in rows[0]
    table = list(csv.DictReader((tmp_path / "figures" / "table1_svf_vs_base.csv").open()))
    assert [r["expert"] for r in table] == ["math"] and table[0]["n"] == "4"
    out = capsys.readouterr().out
    assert "math (add_word): test" in out

    per_question = json.loads((tmp_path / "figures" / "table1_svf_vs_base.json").read_text())["results"]["per_question"]
    assert len(per_question["math"]["ids"]) == 4
    assert sum(per_question["math"]["expert"]) / 4 == pytest.approx(float(table[0]["expert_accuracy"]))
    assert sum(per_question["math"]["base"]) / 4 == pytest.approx(float(table[0]["base_accuracy"]))

    # A second run finds the finished checkpoint: no new steps, the same expert.
    assert main(args) == 0
    again = Expert.load(tmp_path / "math")
    assert all(torch.equal(expert.z[n], again.z[n]) for n in expert.z)
    assert [r["step"] for r in read_metrics(tmp_path / "run")] == [0, 1, 2]

    # Scoring the saved expert again, without training, reproduces its recorded test numbers.
    capsys.readouterr()
    assert main(["--preset", "smoke", "--task", "add_word", "--out", str(tmp_path / "math"), "--rescore"]) == 0
    line = next(l for l in capsys.readouterr().out.splitlines() if l.startswith("math (add_word): test"))
    assert line.endswith("against the recorded accuracies: the same")
    rescored = json.loads((tmp_path / "figures" / "table1_svf_vs_base.json").read_text())["results"]["per_question"]
    assert rescored["math"] == per_question["math"]


def test_table_keeps_per_question_results_of_the_rows_it_holds(tmp_path, monkeypatch):
    monkeypatch.setenv("T2_FIGURES_DIR", str(tmp_path))
    preset = get_preset("tiny")
    pq = {"ids": ["a", "b"], "base": [0, 1], "expert": [1, 1]}
    merge_table1([{"expert": "math", "base_accuracy": 0.5, "expert_accuracy": 1.0, "per_question": pq},
                 {"expert": "code", "base_accuracy": 0.5, "expert_accuracy": 0.5, "per_question": pq}], preset)
    saved = json.loads((tmp_path / "table1_svf_vs_base.json").read_text())["results"]["per_question"]
    assert saved == {"math": pq, "code": pq}
    merge_table1([{"expert": "code", "base_accuracy": 0.4, "expert_accuracy": 0.6}], preset)  # no per-question
    saved = json.loads((tmp_path / "table1_svf_vs_base.json").read_text())["results"]["per_question"]
    assert saved == {"math": pq}  # code's old results no longer match its row


def test_rescored_accuracies_are_compared_with_the_recorded_ones():
    row = {"base_accuracy": 0.25, "expert_accuracy": 0.5,
           "recorded": {"base_accuracy": 0.25, "expert_accuracy": 0.5}}
    assert compare_recorded(row) == "the same"
    row["recorded"]["expert_accuracy"] = 0.4583
    assert compare_recorded(row) == "DIFFERENT (recorded 25.0% -> 45.8%)"
    row["recorded"]["expert_accuracy"] = None  # an expert saved without its test numbers
    assert compare_recorded(row) == "not recorded"


def test_table_merges_rows_by_expert(tmp_path, monkeypatch):
    monkeypatch.setenv("T2_FIGURES_DIR", str(tmp_path))
    preset = get_preset("tiny")
    merge_table1([{"expert": "math", "base_accuracy": 0.2, "expert_accuracy": 0.5}], preset)
    path = merge_table1([{"expert": "code", "base_accuracy": 0.4, "expert_accuracy": 0.6},
                        {"expert": "math", "base_accuracy": 0.2, "expert_accuracy": 0.7}], preset)
    rows = list(csv.DictReader(path.open()))
    assert [(r["expert"], r["expert_accuracy"]) for r in rows] == [("code", "0.6"), ("math", "0.7")]


def test_expert_names_follow_categories():
    tiny = get_preset("tiny")
    assert [tiny.suite_spec.expert_name(t) for t in tiny.suite_spec.training.values()] == ["math", "code", "reasoning"]
    assert tiny.suite_spec.expert_name("classification") == "classification"


def test_the_cli_refuses_out_with_all(capsys):
    with pytest.raises(SystemExit):
        main(["--preset", "smoke", "--all", "--out", "x"])
    assert "--out and --run-dir name one expert" in capsys.readouterr().err


@pytest.mark.parametrize("category", ["math", "code", "reasoning", "classification"])
def test_shipped_tiny_experts_record_their_training(category):
    path = EXPERTS_DIR / "tiny" / category
    expert = Expert.load(path)
    meta = json.loads(path.with_suffix(".json").read_text())
    task = get_preset("tiny").suite_spec.training.get(category, "classification")
    assert meta["config"]["task"] == task and meta["config"]["preset"] == "tiny"
    assert expert.base_variant == "gguf-q4_1" and len(expert.z) == 90
    m = meta["metrics"]
    assert m["evals"][0]["step"] == 0 and m["val_base_accuracy"] == m["evals"][0]["accuracy"]
    # The kept expert is the best on validation (the base model counts as step 0).
    assert m["val_accuracy"] == max(e["accuracy"] for e in m["evals"])
    assert {"test_accuracy", "test_base_accuracy"} <= set(m)
    if category != "classification":
        assert m["train_seconds"] <= 600  # each training-task expert trains in at most 10 min on 2 cores


@pytest.mark.integration
def test_shipped_math_expert_beats_the_base_model_on_held_out_problems():
    from fishfarm import HFBackend
    from fishfarm.suites.tiny import tiny_task
    from t2lib.samples import spread_ids
    from t2lib.core.svd import decompose
    from t2lib.core.svf import SVFModel

    preset = get_preset("tiny")
    lm = preset.load_model()
    svf = SVFModel(lm.model, decompose(lm.model, "mlp", progress=False), model_id=preset.model,
                   base_variant=lm.resolved.variant)
    backend = HFBackend(lm.model, lm.tokenizer, batch_size=32, progress=False)
    task = tiny_task("add_word", "test")
    ids = spread_ids(task.ids, 32)
    base = task.evaluate(backend, sample_ids=ids, progress=False).accuracy
    with svf.using(Expert.load(EXPERTS_DIR / "tiny" / "math")):
        tuned = task.evaluate(backend, sample_ids=ids, progress=False).accuracy
    assert tuned >= base + 0.15, (base, tuned)
