"""The adaptation table's plumbing: experts lookup, outputs (figures, CSV, JSON)."""
import csv
import json

import pytest

from t2lib import adapt
from t2lib.presets import get_preset


def test_missing_experts_name_the_command(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"math, code, reasoning expert in .*t2lib.train --preset tiny"):
        adapt.load_experts(get_preset("tiny"), tmp_path)


def test_smoke_uses_the_shipped_tiny_experts():
    assert get_preset("smoke").experts == "tiny" and get_preset("paper").experts == "paper"


def test_write_outputs_writes_table_figures_and_json(tmp_path, monkeypatch):
    monkeypatch.setenv("T2_FIGURES_DIR", str(tmp_path))
    rows = [{"task": t, "category": c, "strategy": s, "n": 110, "accuracy": 0.5, "first_pass_s": 1.0,
             "second_pass_s": 2.0}
            for c, t in adapt.UNSEEN["tiny"].items() for s in ("base", "prompt", "few-shot")]
    result = {"rows": rows,
              "confusion": {"prompt": {"math": {"math": 100, "other": 10}, "code": {"code": 110},
                                       "reasoning": {"reasoning": 90, "math": 20}}},
              "alpha": {t: [0.2, 0.5, 0.3] for t in adapt.UNSEEN["tiny"].values()}, "cem": {}}
    path = adapt.write_outputs(result, get_preset("tiny"), started=0.0)
    assert [r["strategy"] for r in csv.DictReader(path.open())][:3] == ["base", "prompt", "few-shot"]
    assert (tmp_path / "fig_dispatch_prompt.png").stat().st_size > 1000
    assert (tmp_path / "fig_fewshot_alpha.png").stat().st_size > 1000
    saved = json.loads((tmp_path / "table2_adaptation.json").read_text())
    assert saved["results"]["confusion"]["prompt"]["math"]["other"] == 10 and saved["run"]["preset"]["name"] == "tiny"
