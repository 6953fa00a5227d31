"""The adaptation table's plumbing: experts lookup, outputs (figures, CSV, JSON)."""
import csv
import json

import pytest

from fishfarm.suites.tiny import TINY_SUITE
from t2lib.presets import Preset
from t2lib.runs import adaptation as adapt
from t2lib.runs.expert_sets import load_expert_set
from t2lib.presets import get_preset


def test_missing_experts_name_the_command(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"math, code, reasoning expert in .*t2lib train --preset tiny"):
        load_expert_set(get_preset("tiny"), tmp_path)


def test_smoke_uses_the_shipped_tiny_experts():
    assert get_preset("smoke").expert_set == "tiny" and get_preset("paper").expert_set == "paper"


def test_write_outputs_writes_table_figures_and_json(tmp_path, monkeypatch):
    monkeypatch.setenv("T2_FIGURES_DIR", str(tmp_path))
    rows = [{"task": t, "category": c, "strategy": s, "n": 110, "accuracy": 0.5, "first_pass_s": 1.0,
             "second_pass_s": 2.0}
            for c, t in TINY_SUITE.unseen.items() for s in ("base", "prompt", "few-shot")]
    result = {"rows": rows,
              "confusion": {"prompt": {"math": {"math": 100, "other": 10}, "code": {"code": 110},
                                       "reasoning": {"reasoning": 90, "math": 20}}},
              "alpha": {t: [0.2, 0.5, 0.3] for t in TINY_SUITE.unseen.values()}, "cem": {}}
    path = adapt.write_adaptation(result, get_preset("tiny"), started=0.0)
    assert [r["strategy"] for r in csv.DictReader(path.open())][:3] == ["base", "prompt", "few-shot"]
    assert (tmp_path / "fig_dispatch_prompt.png").stat().st_size > 1000
    assert (tmp_path / "fig_fewshot_alpha.png").stat().st_size > 1000
    saved = json.loads((tmp_path / "table2_adaptation.json").read_text())
    assert saved["results"]["confusion"]["prompt"]["math"]["other"] == 10 and saved["run"]["preset"]["name"] == "tiny"
    # A notebook's own name still draws the figures; another protocol's table does not touch them.
    for png in tmp_path.glob("*.png"):
        png.unlink()
    adapt.write_adaptation(result, get_preset("tiny"), started=0.0, name="nb03_prompt")
    assert (tmp_path / "fig_dispatch_prompt.png").exists()
    before = (tmp_path / "fig_dispatch_prompt.png").stat().st_mtime_ns
    adapt.write_adaptation(result, get_preset("tiny"), started=0.0, name="table2_adaptation_mix-scale", figures=False)
    assert (tmp_path / "fig_dispatch_prompt.png").stat().st_mtime_ns == before
    assert (tmp_path / "table2_adaptation_mix-scale.csv").exists()


@pytest.fixture
def fake_two_pass(tmp_path, monkeypatch):
    """run_adaptation over fake tasks and a fake Transformer2 (a pattern of right answers per
    strategy); returns the list of (task, strategy, shot ids) it was called with."""
    from types import SimpleNamespace

    import torch

    from t2lib.methods.transformer2 import TwoPassResult

    monkeypatch.setenv("T2_BUILD_DIR", str(tmp_path))
    calls = []

    class FakeTwoPass:
        def __init__(self, svf, backend, experts, *, strategy, **kwargs):
            self.strategy = strategy

        def evaluate(self, task, ids, *, shot_ids=()):
            calls.append((task.name, self.strategy, tuple(shot_ids)))
            correct = [int(s[-1]) % 2 == (self.strategy == "base") for s in ids]  # a pattern per strategy
            samples = tuple(SimpleNamespace(sample_id=s, score=SimpleNamespace(correct=c), official=None) for s, c in zip(ids, correct))
            return TwoPassResult(task.name, self.strategy, sum(correct) / len(ids), samples, ["math"] * len(ids),
                                 1.0, 2.0, extra={"reused_answers": 0})

    experts = {c: SimpleNamespace(z={"w": torch.zeros(2)}) for c in TINY_SUITE.categories}
    monkeypatch.setattr(adapt, "Transformer2", FakeTwoPass)
    monkeypatch.setattr(adapt, "load_expert_set", lambda preset, folder=None: (experts, None))
    monkeypatch.setattr(adapt, "check_expert_set", lambda preset, folder=None, classification=False: folder)
    monkeypatch.setattr(Preset, "task", lambda preset, name, split, **kw: SimpleNamespace(
        name=name, ids=[f"{name}-{i}" for i in range(40)]))
    session = SimpleNamespace(lm=SimpleNamespace(resolved=SimpleNamespace(path="m")), svf=None, backend=None,
                              backend_name="hf")
    return calls, session


def test_run_adaptation_stores_per_question_results_and_recomputes_records_without_them(tmp_path, fake_two_pass):
    calls, session = fake_two_pass
    preset = get_preset("smoke")
    first = adapt.run_adaptation(preset, strategies=("base", "prompt"), session=session, progress=False)
    assert len(calls) == 3 * 2
    pq = first["per_question"]["sub_word"]
    assert len(pq["ids"]) == first["rows"][0]["n"]
    assert pq["base"] == [int(int(s[-1]) % 2 == 1) for s in pq["ids"]]
    assert sum(pq["prompt"]) / len(pq["ids"]) == pytest.approx(first["rows"][1]["accuracy"], abs=1e-4)
    second = adapt.run_adaptation(preset, strategies=("base", "prompt"), session=session, progress=False)
    assert len(calls) == 6 and second["per_question"] == first["per_question"]  # kept, not recomputed
    record = next((tmp_path / "adapt" / "smoke").glob("sub_word-prompt-*.json"))
    old = json.loads(record.read_text())
    old["version"] -= 1  # a record of an earlier version (before per-question results were stored)
    record.write_text(json.dumps(old))
    adapt.run_adaptation(preset, strategies=("base", "prompt"), session=session, progress=False)
    assert [c[:2] for c in calls[6:]] == [("sub_word", "prompt")]


def test_shots_are_drawn_with_the_seed_of_each_task_when_one_is_set(fake_two_pass):
    from dataclasses import replace

    from t2lib.samples import draw_shots

    calls, session = fake_two_pass
    smoke = get_preset("smoke")
    official = replace(smoke, cem=replace(smoke.cem, shot_seeds=(("sub_word", 27),)))
    adapt.run_adaptation(official, strategies=("few-shot",), session=session, progress=False)
    shots = {task: ids for task, _, ids in calls}
    ids = [f"sub_word-{i}" for i in range(40)]
    assert shots["sub_word"] == tuple(draw_shots(ids, smoke.cem.shots, seed=27)[0])
    assert shots["sub_word"] != tuple(draw_shots(ids, smoke.cem.shots, seed=smoke.cem.seed)[0])
    crowd = [f"where_crowd-{i}" for i in range(40)]  # a task without its own seed keeps the preset's
    assert shots["where_crowd"] == tuple(draw_shots(crowd, smoke.cem.shots, seed=smoke.cem.seed)[0])
