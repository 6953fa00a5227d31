"""Every notebook executes headlessly with papermill on the smoke preset, is stored clean, and
writes results whose numbers are in range and agree with each other."""
import json
import math

import nbformat
import pytest

from t2lib.notebooks import list_notebooks, run_notebook
from t2lib.presets import get_preset

NOTEBOOKS = list_notebooks()
SMOKE = get_preset("smoke")
CATEGORIES = SMOKE.suite_spec.categories
LABELS = {*CATEGORIES, "other"}


def test_the_notebooks_are_numbered_00_to_07_in_order():
    assert [p.name[:2] for p in NOTEBOOKS] == [f"{i:02d}" for i in range(8)]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_stored_without_outputs_and_with_four_parts(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)  # every cell has its id, the schema holds
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, f"{path.name}: strip outputs"
    assert nb.cells[0].cell_type == "markdown" and "preset" in nb.cells[0].source.lower()
    params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1 and 'PRESET = "tiny"' in params[0].source
    assert "write_results" in nb.cells[-1].source or "write_outputs" in nb.cells[-1].source


def _fraction(x) -> bool:
    return isinstance(x, (int, float)) and 0.0 <= x <= 1.0


def check_quickstart(r):
    answers = r["answers"]
    assert len(answers) == len(CATEGORIES)  # one prompt per unseen task on smoke
    assert {a["task"] for a in answers} == set(SMOKE.suite_spec.unseen.values())
    for a in answers:
        assert a["label"] in LABELS and isinstance(a["correct"], bool)
        assert a["first_pass_s"] >= 0 and a["second_pass_s"] > 0
    measured = r["measured"]  # the committed Table 2, with its intervals, shown before any single answer
    assert {m["method"] for m in measured} >= {"base", "prompt"}
    for m in measured:
        assert 0 <= m["low"] <= m["accuracy"] <= m["high"] <= 100
        assert m["gain"] is None or m["gain_low"] <= m["gain"] <= m["gain_high"]


def check_svd_inspection(r):
    assert r["targets"] == "mlp+attn" and {m["module"] for m in r["spectrum_by_module"]} >= {"mlp.down_proj"}
    for m in r["spectrum_by_module"]:
        assert m["rank"] > 0 and m["sigma_max"] >= m["sigma_min"] > 0
        assert _fraction(m["energy_top0.01"]) and m["energy_top0.01"] <= m["energy_top0.1"] <= m["energy_top0.5"] <= 1
        assert 0 < m["rank_for_90"] <= 1 and 0 < m["effective_rank_share"] <= 1
    study = {s["variant"]: s for s in r["scaling_study"]}
    assert study["base"]["same_as_base"] == 1.0  # the base answers are compared with themselves
    for s in study.values():
        assert _fraction(s["correct"]) and _fraction(s["same_as_base"]) and s["ref_loglik"] < 0
        assert len(s["answers"]) == SMOKE.inspect_prompts


def check_train_expert(r):
    row = r["table1_row"]
    assert r["task"] == SMOKE.suite_spec.training[r["category"]] and row["n"] == SMOKE.eval_limit
    assert _fraction(row["base_accuracy"]) and _fraction(row["expert_accuracy"])
    assert row["gain_points"] == pytest.approx(100 * (row["expert_accuracy"] - row["base_accuracy"]), abs=0.06)
    assert [h["step"] for h in r["history"]] == list(range(SMOKE.train.steps + 1))
    assert all(_fraction(h["accuracy"]) for h in r["history"][1:])
    assert row["best_step"] in [h["step"] for h in r["history"]]
    shifts = r["scale_shift"]
    assert len(shifts) == 90 and all(0 <= s["mean_abs_shift"] <= s["max_abs_shift"] for s in shifts)


def check_adaptation(strategy):
    def check(r):
        rows = [row for row in r["rows"] if row["strategy"] == strategy]
        base = {row["task"]: row for row in r["rows"] if row["strategy"] == "base"}
        assert {row["task"] for row in rows} == set(SMOKE.suite_spec.unseen.values()) == set(base)
        for row in rows:
            assert row["n"] == base[row["task"]]["n"] == SMOKE.eval_limit  # the same samples as the base row
            pq = r["per_question"][row["task"]]
            assert len(pq["ids"]) == row["n"] and set(pq[strategy]) <= {0, 1}
            assert sum(pq[strategy]) / row["n"] == pytest.approx(row["accuracy"], abs=1e-4)
            assert row["first_pass_s"] >= 0 and row["second_pass_s"] >= 0
        if strategy in r["confusion"]:
            for category, labels in r["confusion"][strategy].items():
                assert set(labels) <= LABELS and sum(labels.values()) == SMOKE.eval_limit, category
        if strategy == "few-shot":
            for task, alpha in r["alpha"].items():
                assert len(alpha) == len(CATEGORIES) and all(math.isfinite(a) for a in alpha)
                assert r["cem"][task]["evaluations"] >= SMOKE.cem.population and _fraction(r["cem"][task]["accuracy"])
    return check


def check_paper_tables(r):
    kit = [row for row in r["table1"] + r["table2"] if row["source"].startswith("kit")]
    assert kit and any(not row["source"].startswith("kit") for row in r["table1"])  # the paper's rows beside
    for row in kit:
        assert 0 <= row["low"] <= row["accuracy"] <= row["high"] <= 100
        if row["gain"] is not None:
            assert row["gain_low"] <= row["gain"] <= row["gain_high"]
            assert row["gain"] == pytest.approx(row["accuracy"] - row["base"], abs=0.02)
    for row in r["table3"]:
        assert 0 <= row["first_pass_share"] <= 1


def check_explorer(r):
    names, matrix = r["similarity"]["experts"], r["similarity"]["matrix"]
    assert len(matrix) == len(names) >= 3
    for i in range(len(names)):
        assert matrix[i][i] == pytest.approx(1.0, abs=1e-6)
        for j in range(len(names)):
            assert -1 - 1e-6 <= matrix[i][j] <= 1 + 1e-6 and matrix[i][j] == pytest.approx(matrix[j][i], abs=1e-6)
    assert all(v >= 0 for changes in r["relative_change"].values() for v in changes.values())
    assert set(r["mixer"]["answers"]) == {"base", "mixture"} and r["mixer"]["alpha"][names[0]] == 1.0
    # a component's shift (in Δσ/σ₁) has the sign of its scale − 1
    assert all((c["scale"] - 1) * c["shift"] >= 0 and c["sigma"] > 0 for c in r["top_components"])


CHECKS = {"00": ("nb00_quickstart.json", check_quickstart), "01": ("nb01_svd_inspection.json", check_svd_inspection),
          "02": ("nb02_train_expert.json", check_train_expert), "03": ("nb03_prompt.json", check_adaptation("prompt")),
          "04": ("nb04_cls_expert.json", check_adaptation("cls-expert")),
          "05": ("nb05_few_shot.json", check_adaptation("few-shot")),
          "06": ("nb06_paper_tables.json", check_paper_tables), "07": ("nb07_expert_explorer.json", check_explorer)}


def test_every_notebook_has_a_value_check():
    assert sorted(CHECKS) == [p.name[:2] for p in NOTEBOOKS]


@pytest.mark.notebooks
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_executes_on_smoke_preset_and_writes_sane_results(path, tmp_path, monkeypatch):
    figures = tmp_path / "figures"
    monkeypatch.setenv("T2_FIGURES_DIR", str(figures))
    monkeypatch.setenv("T2_BUILD_DIR", str(tmp_path / "build"))
    executed = run_notebook(path, tmp_path / "executed", parameters={"PRESET": "smoke"}, progress=False)
    nb = nbformat.read(executed, as_version=4)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    name, check = CHECKS[path.name[:2]]
    saved = json.loads((figures / name).read_text())
    run = saved["run"]
    assert run["preset"]["name"] == "smoke" and run["git_revision"] and run["versions"]["torch"]
    check(saved["results"])
    assert list(figures.glob("*.png")), "the notebook wrote no figures"
