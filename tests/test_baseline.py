"""The baseline command on the smoke preset: every task gets a row, and a rerun resumes."""
import csv

import pytest

import t2lib.runs.baseline as baseline
from t2lib.presets import get_preset

pytestmark = pytest.mark.integration


def test_baseline_writes_every_task_and_resumes(tmp_path, monkeypatch):
    monkeypatch.setenv("T2_FIGURES_DIR", str(tmp_path / "figures"))
    monkeypatch.setenv("T2_BUILD_DIR", str(tmp_path / "work"))
    preset = get_preset("smoke")
    rows = baseline.run_baseline(preset, progress=False)
    tasks = [(r["suite"], r["task"]) for r in rows]
    assert len(tasks) == 14 and ("tiny", "classification (choice)") in tasks and ("paper", "humaneval") in tasks
    assert all(0.0 <= r["accuracy"] <= 1.0 and r["n"] > 0 for r in rows)
    path = baseline.write_baseline(rows, preset, started=0.0)
    with open(path) as f:
        table = list(csv.DictReader(f))
    assert [row["task"] for row in table] == [t for _, t in tasks]
    assert (tmp_path / "figures" / "fig_baseline_smoke.png").exists()

    def no_evaluation(*a, **k):
        raise AssertionError("a finished task was evaluated again")

    monkeypatch.setattr(baseline, "_task_eval", lambda *a, **k: no_evaluation)
    monkeypatch.setattr(baseline, "_dispatch_eval", lambda *a, **k: no_evaluation)
    again = baseline.run_baseline(preset, progress=False)
    assert again == rows
