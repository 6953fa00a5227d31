"""Every notebook executes headlessly with papermill on the smoke preset, is stored clean, and
writes results whose numbers are in range and agree with each other."""
import json
import math

import nbformat
import pytest

from t2lib.runs.notebooks import OUTSIDE_REPRODUCTION, list_notebooks, run_notebook
from t2lib.presets import get_preset, with_options

NOTEBOOKS = list_notebooks()
LABELS = {"math", "code", "reasoning", "other"}


def test_the_notebooks_are_numbered_in_order_from_00():
    assert [p.name[:2] for p in NOTEBOOKS] == [f"{i:02d}" for i in range(len(NOTEBOOKS))]


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
    assert "write_results" in nb.cells[-1].source or "write_adaptation" in nb.cells[-1].source


def _fraction(x) -> bool:
    return isinstance(x, (int, float)) and 0.0 <= x <= 1.0


def check_quickstart(r, P):
    answers = r["answers"]
    assert len(answers) == len(P.suite_spec.categories)  # one prompt per unseen task on smoke and rehearsal
    assert {a["task"] for a in answers} == set(P.suite_spec.unseen.values())
    for a in answers:
        assert a["label"] in LABELS and isinstance(a["correct"], bool)
        assert a["first_pass_s"] >= 0 and a["second_pass_s"] > 0
    measured = r["measured"]  # the committed Table 2, with its intervals, shown before any single answer
    assert {m["method"] for m in measured} >= {"base", "prompt"}
    for m in measured:
        assert 0 <= m["low"] <= m["accuracy"] <= m["high"] <= 100
        assert m["gain"] is None or m["gain_low"] <= m["gain"] <= m["gain_high"]


def check_svd_inspection(r, P):
    assert r["targets"] == "mlp+attn" and {m["module"] for m in r["spectrum_by_module"]} >= {"mlp.down_proj"}
    for m in r["spectrum_by_module"]:
        assert m["rank"] > 0 and m["sigma_max"] >= m["sigma_min"] > 0
        assert _fraction(m["energy_top0.01"]) and m["energy_top0.01"] <= m["energy_top0.1"] <= m["energy_top0.5"] <= 1
        assert 0 < m["rank_for_90"] <= 1 and 0 < m["effective_rank_share"] <= 1
    study = {s["variant"]: s for s in r["scaling_study"]}
    assert study["base"]["same_as_base"] == 1.0  # the base answers are compared with themselves
    for s in study.values():
        assert _fraction(s["correct"]) and _fraction(s["same_as_base"]) and s["ref_loglik"] < 0
        assert len(s["answers"]) == P.inspect_prompts


def check_train_expert(r, P):
    row = r["table1_row"]
    assert r["task"] == P.suite_spec.training[r["category"]] and row["n"] == P.eval_limit
    assert _fraction(row["base_accuracy"]) and _fraction(row["expert_accuracy"])
    assert row["gain_points"] == pytest.approx(100 * (row["expert_accuracy"] - row["base_accuracy"]), abs=0.06)
    assert [h["step"] for h in r["history"]] == list(range(P.train.steps + 1))  # the kept λ's run
    assert row["kl_coef"] in (P.train_kl_sweep or (P.train.kl_coef,))
    assert all(_fraction(h["accuracy"]) for h in r["history"][1:])
    assert row["best_step"] in [h["step"] for h in r["history"]]
    shifts = r["scale_shift"]
    assert len(shifts) == 90 and all(0 <= s["mean_abs_shift"] <= s["max_abs_shift"] for s in shifts)


def check_adaptation(strategy):
    def check(r, P):
        rows = [row for row in r["rows"] if row["strategy"] == strategy]
        base = {row["task"]: row for row in r["rows"] if row["strategy"] == "base"}
        assert {row["task"] for row in rows} == set(P.suite_spec.unseen.values()) == set(base)
        for row in rows:
            assert row["n"] == base[row["task"]]["n"] == P.eval_limit  # the same samples as the base row
            pq = r["per_question"][row["task"]]
            assert len(pq["ids"]) == row["n"] and set(pq[strategy]) <= {0, 1}
            assert sum(pq[strategy]) / row["n"] == pytest.approx(row["accuracy"], abs=1e-4)
            assert row["first_pass_s"] >= 0 and row["second_pass_s"] >= 0
        if strategy in r["confusion"]:
            for category, labels in r["confusion"][strategy].items():
                assert set(labels) <= LABELS and sum(labels.values()) == P.eval_limit, category
        if strategy == "few-shot":
            layers = 30  # SmolLM2-135M
            for task, alpha in r["alpha"].items():
                assert len(alpha) == len(P.suite_spec.categories)
                flat = [a for row in alpha for a in row] if P.cem.per_layer else alpha
                assert len(flat) == len(alpha) * (layers if P.cem.per_layer else 1)
                assert all(math.isfinite(a) and P.cem.bounds[0] <= a <= P.cem.bounds[1] for a in flat)
                assert r["cem"][task]["evaluations"] >= P.cem.population and _fraction(r["cem"][task]["accuracy"])
    return check


def check_paper_tables(r, P):
    kit = [row for row in r["table1"] + r["table2"] if row["source"].startswith("kit")]
    assert kit and any(not row["source"].startswith("kit") for row in r["table1"])  # the paper's rows beside
    for row in kit:
        assert 0 <= row["low"] <= row["accuracy"] <= row["high"] <= 100
        if row["gain"] is not None:
            assert row["gain_low"] <= row["gain"] <= row["gain_high"]
            assert row["gain"] == pytest.approx(row["accuracy"] - row["base"], abs=0.02)
    for row in r["table3"]:
        assert 0 <= row["first_pass_share"] <= 1


def check_explorer(r, P):
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


def check_ablations(r, P):
    rows = r["table4"]
    assert rows[0]["row"] == "base" and {row["row"] for row in rows[1:]} <= {
        "svf-pg-mlp", "svf-pg-attn", "svf-pg-mlp+attn", "svf-nt-attn", "lora-pg-attn", "lora-nt-attn", "lora-nt-mlp+attn"}
    for row in rows:
        for part in ("train", "unseen"):
            assert 0 <= row[f"{part}_low"] <= row[f"{part}_accuracy"] <= row[f"{part}_high"] <= 100
            if row[f"{part}_gain"] != "":
                assert row[f"{part}_gain_low"] <= row[f"{part}_gain"] <= row[f"{part}_gain_high"]
                assert row[f"{part}_gain"] == pytest.approx(row[f"{part}_accuracy"] - rows[0][f"{part}_accuracy"], abs=0.02)
        assert row["params"] >= 0 and row["train_seconds"] >= 0
    lora = [row for row in rows if row["method"] == "lora"]
    svf = [row for row in rows if row["method"] == "svf" and row["targets"] == "attn"]
    assert all(x["params"] > y["params"] for x in lora for y in svf)  # LoRA trains more parameters than SVF
    for c in r["table5"]:
        assert 0 <= c["base"] <= 100 and c["ordered_gain"] == pytest.approx(c["ordered"] - c["base"])
        assert c["shuffle_low"] <= c["shuffle_effect"] <= c["shuffle_high"]
    curves = r["curves"]
    assert {c["method"] for c in curves} >= {"svf"} and {c["method"] for c in curves} <= {"svf", "lora"}
    for c in curves:
        assert c["steps"] == sorted(c["steps"]) and len(c["steps"]) == len(c["accuracy"]) >= 2
        assert all(0 <= a <= 1 for a in c["accuracy"]) and 0 <= c["base"] <= 1
        assert c["best_step"] in c["steps"] and c["steps"][0] == 0


def check_export_lora(r, P):
    assert abs(r["hand_energy"] - r["library_energy"]) < 1e-6 and 0 < r["library_energy"] <= 1
    assert r["full_rank_max_abs_gap"] < 1e-3 and r["peft_vs_kit_max_abs_logit_gap"] < 1e-3  # PEFT = the kit
    curve = list(r["energy_by_rank"].values())
    assert curve == sorted(curve) and curve[-1] == pytest.approx(1.0)
    adapter = r["adapter"]
    assert adapter["config_r"] == adapter["config_alpha"] == adapter["rank"] == (r["rank"] or adapter["rank"])
    assert adapter["bytes"] > 0
    for row in r["sweep"]:
        assert 0 <= row["low"] <= row["accuracy"] <= row["high"] <= 100 and 0 < row["energy_kept"] <= 1
        assert row["diff_low"] <= row["diff"] <= row["diff_high"] and row["same_scores"] <= row["n"]
        assert row["diff"] == pytest.approx(row["accuracy"] - row["expert_accuracy"], abs=0.02)
        if row["rank"] == "full":  # the full adapter is the expert: every answer scores the same
            assert row["energy_kept"] == 1.0 and row["diff"] == 0 and row["same_scores"] == row["n"]
    assert set(r["smallest_within"]) == {row["expert"] for row in r["sweep"]}


def check_own_experts(r, P):
    suite = P.suite_spec
    assert r["suite"] == suite.name and {row["task"] for row in r["training"]} == set(suite.trainable)
    for row in r["training"]:
        assert _fraction(row["base_accuracy"]) and _fraction(row["expert_accuracy"]) and row["n"] == P.eval_limit
    table1 = {row["task"]: row for row in r["table1"]}  # the table the training rows were merged into
    assert set(table1) == set(suite.trainable)
    for row in r["training"]:
        assert float(table1[row["task"]]["expert_accuracy"]) == pytest.approx(row["expert_accuracy"], abs=1e-4)
    strategies = {"base", "prompt", "cls-expert", "few-shot"}
    assert {(row["task"], row["strategy"]) for row in r["adaptation"]} == {
        (t, s) for t in suite.unseen.values() for s in strategies}
    assert all(_fraction(row["accuracy"]) and row["n"] == P.eval_limit for row in r["adaptation"])


CHECKS = {"00": ("nb00_quickstart.json", check_quickstart), "01": ("nb01_svd_inspection.json", check_svd_inspection),
          "02": ("nb02_train_expert.json", check_train_expert), "03": ("nb03_prompt.json", check_adaptation("prompt")),
          "04": ("nb04_cls_expert.json", check_adaptation("cls-expert")),
          "05": ("nb05_few_shot.json", check_adaptation("few-shot")),
          "06": ("nb06_paper_tables.json", check_paper_tables), "07": ("nb07_expert_explorer.json", check_explorer),
          "08": ("nb08_baselines_ablations.json", check_ablations), "09": ("nb09_export_lora.json", check_export_lora),
          "10": ("nb10_your_own_experts.json", check_own_experts)}


def test_every_notebook_has_a_value_check():
    assert sorted(CHECKS) == [p.name[:2] for p in NOTEBOOKS]


def check_run(executed, figures, number: str, preset) -> None:
    """Asserts an executed notebook has no error and checks the numbers of its results JSON."""
    nb = nbformat.read(executed, as_version=4)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors, errors[:1]
    name, check = CHECKS[number]
    saved = json.loads((figures / name).read_text())
    run = saved["run"]
    assert run["preset"]["name"] == preset.name and run["git_revision"] and run["versions"]["torch"]
    check(saved["results"], preset)


@pytest.mark.notebooks
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_executes_on_smoke_preset_and_writes_sane_results(path, tmp_path, monkeypatch):
    figures = tmp_path / "figures"
    monkeypatch.setenv("T2_FIGURES_DIR", str(figures))
    monkeypatch.setenv("T2_BUILD_DIR", str(tmp_path / "build"))
    preset = get_preset("smoke")
    if path.name.startswith("10"):  # trains its own experts, on the example suite file
        monkeypatch.setenv("T2_EXPERTS_DIR", str(tmp_path / "experts"))
        preset = with_options(preset, suite=str(path.parent.parent / "examples" / "two_skills.yaml"))
    executed = run_notebook(path, tmp_path / "executed", parameters={"PRESET": "smoke"}, progress=False)
    check_run(executed, figures, path.name[:2], preset)
    assert list(figures.glob("*.png")), "the notebook wrote no figures"


@pytest.mark.rehearsal
def test_make_reproduce_on_the_rehearsal_preset_runs_every_paper_path(tmp_path, monkeypatch):
    """`make reproduce PRESET=rehearsal`: the paper suite, sigmoid experts with a λ sweep, the
    classification expert, "generate" dispatch and per-layer CEM, trained and run end to end."""
    from t2lib.cli import reproduce

    figures, experts = tmp_path / "figures", tmp_path / "experts"
    for var, folder in (("T2_FIGURES_DIR", figures), ("T2_EXPERTS_DIR", experts), ("T2_BUILD_DIR", tmp_path / "build")):
        monkeypatch.setenv(var, str(folder))
    preset = get_preset("rehearsal")
    assert reproduce.main(["--preset", "rehearsal", "--out", str(tmp_path / "executed")]) == 0
    meta = {p.stem: json.loads(p.read_text()) for p in experts.glob("*.json")}
    assert sorted(meta) == ["classification", "code", "math", "reasoning"]
    assert all(m["parameterization"] == "sigmoid" for m in meta.values())
    assert {m["config"]["kl_coef"] for m in meta.values()} <= set(preset.train_kl_sweep)
    for path in NOTEBOOKS:
        if path.name[:2] not in OUTSIDE_REPRODUCTION:  # 10 runs with --only 10 or with a suite file
            check_run(tmp_path / "executed" / preset.name / path.name, figures, path.name[:2], preset)
    assert not (tmp_path / "executed" / preset.name / "10_your_own_experts.ipynb").exists()


@pytest.mark.parametrize("path", [p for p in NOTEBOOKS if p.name[:2] in ("00", "01", "02", "03", "04", "05")],
                         ids=lambda p: p.stem)
def test_each_notebook_computes_its_mechanism_and_checks_it_against_the_library(path):
    """The teaching cells: a hand computation asserted equal to the library (they run, with their
    asserts, in the smoke runs above), the method's equation where the paper has one, an exercise with
    a collapsed solution cell (run with the rest of the notebook)."""
    nb = nbformat.read(path, as_version=4)
    code = [c.source for c in nb.cells if c.cell_type == "code"]
    text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert any("assert" in src for src in code), "no hand computation is checked against the library"
    if path.name[:2] in ("01", "02", "05"):
        assert "$$" in text and "§3." in text, "the method's equation, with the paper's section"
    if path.name[:2] in ("01", "02", "03", "05"):
        solutions = [c for c in nb.cells if "solution" in c.metadata.get("tags", [])]
        assert solutions and all(c.metadata.get("jupyter", {}).get("source_hidden") for c in solutions)
        assert "Exercise" in text
