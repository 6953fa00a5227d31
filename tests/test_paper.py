"""The paper's numbers beside the kit's: intervals, row forms, and where results are read."""
import matplotlib.pyplot as plt
import pytest

from t2lib.views import paper, plots


def test_wilson_interval_matches_the_textbook_values():
    low, high = paper.wilson_interval(0.5, 100)
    assert (low, high) == pytest.approx((0.4038, 0.5962), abs=1e-4)
    assert paper.wilson_interval(0.0, 10)[0] == 0.0 and paper.wilson_interval(0.0, 10)[1] == pytest.approx(0.2775, abs=1e-4)
    with pytest.raises(ValueError, match="at least one sample"):
        paper.wilson_interval(0.5, 0)
    with pytest.raises(ValueError, match="proportion"):
        paper.wilson_interval(50, 100)  # a percentage where a fraction belongs


def test_difference_interval_matches_newcombes_example():
    # Newcombe (1998), method 10: 56/70 against 48/80 gives 0.0524 to 0.3339
    low, high = paper.difference_interval(56 / 70, 70, 48 / 80, 80)
    assert (low, high) == pytest.approx((0.0524, 0.3339), abs=1e-4)


def test_paper_rows_cover_every_model_method_and_task():
    rows = paper.paper_rows(paper.TABLE2, paper.TABLE2_TASKS)
    assert len(rows) == 3 * (5 + 5 + 3)
    few = next(r for r in rows if r["source"] == "Llama-3-8B-Instruct" and r["method"] == "few-shot"
               and r["category"] == "code")
    assert few["n"] == 164 - 10 and few["gain"] == pytest.approx(62.99 - 60.98)
    assert few["gain_low"] < 0 < few["gain_high"]  # two questions of HumanEval: within the noise
    with pytest.raises(ValueError, match="no \\['Llama-3-8B'\\].*Llama-3-8B-Instruct"):
        paper.paper_rows(paper.TABLE2, paper.TABLE2_TASKS, models=["Llama-3-8B"])
    base = next(r for r in rows if r["method"] == "base")
    assert base["gain"] is None and base["low"] < base["accuracy"] < base["high"]


def test_kit_rows_come_from_the_csvs_the_kit_writes(tmp_path):
    t1 = tmp_path / "table1_svf_vs_base.csv"
    t1.write_text("expert,task,n,base_accuracy,expert_accuracy\n"
                  "classification,classification,120,0.15,0.66\n"
                  "math,add_word,120,0.25,0.5\n")
    rows = paper.kit_table1_rows(paper.read_csv(t1), source="kit")
    assert [(r["category"], r["method"]) for r in rows] == [("math", "base"), ("math", "svf")]
    assert rows[1]["gain"] == pytest.approx(25.0) and rows[1]["gain_low"] > 0
    t2 = tmp_path / "table2_adaptation.csv"
    t2.write_text("task,category,strategy,n,accuracy,first_pass_s,second_pass_s\n"
                  "fn_string,code,base,100,0.4,0.0,10.0\n"
                  "fn_string,code,prompt,100,0.5,5.0,15.0\n")
    rows = paper.kit_table2_rows(paper.read_csv(t2), source="kit")
    assert rows[1]["gain"] == pytest.approx(10.0) and rows[1]["base"] == pytest.approx(40.0)
    times = paper.pass_time_rows(paper.read_csv(t2), source="kit")
    assert times[0]["first_pass_share"] == pytest.approx(0.25)
    assert len(times) == 1 + len(paper.TABLE3)
    t2.write_text("task,category,strategy,n,accuracy,first_pass_s,second_pass_s\n"
                  "fn_string,code,prompt,100,0.5,5.0,15.0\n")
    with pytest.raises(ValueError, match="no base row for \\['fn_string'\\]"):
        paper.kit_table2_rows(paper.read_csv(t2), source="kit")


def test_results_are_read_from_the_preset_then_the_committed_ones(tmp_path, monkeypatch):
    own, committed = tmp_path / "own", tmp_path / "committed"
    own.mkdir()
    committed.mkdir()
    monkeypatch.setenv("T2_FIGURES_DIR", str(own))
    monkeypatch.setattr(paper, "FIGURES_DIR", committed)
    with pytest.raises(FileNotFoundError, match="make adapt PRESET=paper"):
        paper.find_results("paper", "table2_adaptation.csv")
    (committed / "table2_adaptation.csv").write_text("x\n")
    assert paper.find_results("paper", "table2_adaptation.csv") == (committed / "table2_adaptation.csv", "tiny")
    (own / "table2_adaptation.csv").write_text("x\n")
    assert paper.find_results("paper", "table2_adaptation.csv") == (own / "table2_adaptation.csv", "paper")


def test_gain_figure_has_a_bar_per_source_and_method():
    rows = paper.paper_rows(paper.TABLE1, paper.TABLE1_TASKS, models=["Llama-3-8B-Instruct", "Mistral-7B-Instruct-v0.3"])
    fig = plots.plot_gains(rows, categories=paper.CATEGORIES)
    bars = [p for ax in fig.axes for p in ax.patches]
    assert len(bars) == 3 * 2 * 2  # categories x sources x (lora, svf)
    plt.close(fig)


def test_paired_interval_is_tighter_than_the_unpaired_one_on_the_same_questions():
    base = [0] * 50 + [1] * 50
    assert paper.paired_interval(base, base) == (0.0, 0.0)
    adapted = [1] * 10 + [0] * 40 + [1] * 50  # ten questions turned right, none turned wrong
    low, high = paper.paired_interval(base, adapted)
    assert 0 < low < 0.1 < high <= 0.2
    u_low, u_high = paper.difference_interval(0.6, 100, 0.5, 100)
    assert high - low < (u_high - u_low) / 2
    assert paper.paired_interval(base, adapted, seed=0) == (low, high)  # seeded: repeatable
    with pytest.raises(ValueError, match="equal, non-empty"):
        paper.paired_interval(base, adapted[:-1])


def test_kit_table2_uses_paired_intervals_where_per_question_results_exist():
    rows = [{"task": "t", "category": "code", "strategy": s, "n": 4, "accuracy": a, "first_pass_s": 0.0,
             "second_pass_s": 1.0} for s, a in (("base", 0.25), ("prompt", 0.75), ("few-shot", 0.5))]
    per_question = {"t": {"ids": ["a", "b", "c", "d"], "base": [1, 0, 0, 0], "prompt": [1, 1, 1, 0]}}
    out = {r["method"]: r for r in paper.kit_table2_rows(rows, source="kit", per_question=per_question)}
    assert out["prompt"]["gain_interval"] == paper.PAIRED and out["few-shot"]["gain_interval"] == paper.UNPAIRED
    assert out["prompt"]["gain"] == pytest.approx(50.0)  # from the per-question results: 3 of 4 against 1 of 4
    assert out["base"]["gain_interval"] is None
    per_question["t"]["prompt"] = [1, 1, 0, 0]  # 2 right of 4, but the CSV says 3
    with pytest.raises(ValueError, match="different runs"):
        paper.kit_table2_rows(rows, source="kit", per_question=per_question)


def test_kit_table1_uses_paired_intervals_where_per_question_results_exist():
    rows = [{"expert": "math", "task": "add_word", "n": 4, "base_accuracy": 0.25, "expert_accuracy": 0.75},
            {"expert": "code", "task": "fn_arith", "n": 4, "base_accuracy": 0.5, "expert_accuracy": 0.5}]
    per_question = {"math": {"ids": list("abcd"), "base": [1, 0, 0, 0], "expert": [1, 1, 1, 0]}}
    out = {(r["category"], r["method"]): r for r in paper.kit_table1_rows(rows, source="kit", per_question=per_question)}
    assert out[("math", "svf")]["gain_interval"] == paper.PAIRED
    assert out[("code", "svf")]["gain_interval"] == paper.UNPAIRED
    per_question["math"]["base"] = [1, 1, 0, 0]  # 50%, the CSV says 25%
    with pytest.raises(ValueError, match="math/base .* different runs"):
        paper.kit_table1_rows(rows, source="kit", per_question=per_question)


def test_read_per_question(tmp_path):
    assert paper.read_per_question(tmp_path / "absent.json") is None
    path = tmp_path / "table2_adaptation.json"
    path.write_text('{"results": {"rows": []}, "run": {}}')
    assert paper.read_per_question(path) is None
    path.write_text('{"results": {"per_question": {"t": {"ids": ["a"], "base": [1]}}}, "run": {}}')
    assert paper.read_per_question(path) == {"t": {"ids": ["a"], "base": [1]}}


def test_the_count_bootstrap_matches_resampling_questions_directly():
    import numpy as np
    rng = np.random.default_rng(1)
    base = rng.integers(0, 2, 200)
    adapted = np.where(rng.random(200) < 0.3, 1 - base, base)  # 30% of the answers flip
    picks = np.random.default_rng(2).integers(0, 200, size=(20_000, 200))
    direct = (adapted - base)[picks].mean(axis=1)
    expected = np.quantile(direct, [0.025, 0.975])
    low, high = paper.paired_interval(base.tolist(), adapted.tolist(), resamples=20_000)
    assert (low, high) == pytest.approx(tuple(expected), abs=0.01)
    assert low < (adapted.mean() - base.mean()) < high
