import re

import pytest

from fishfarm.scoring import score_category, score_code_many
from fishfarm.suites.tiny import TINY_SUITE, TINY_TASKS, classification_task, tiny_task
from fishfarm.suites.tiny.generators import FAMILIES, SPLITS

TRAINING, UNSEEN = TINY_SUITE.training, TINY_SUITE.unseen


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_generated_splits_are_seeded_and_disjoint(family):
    gen = FAMILIES[family]
    splits = {s: gen(s) for s in SPLITS}
    assert splits == {s: gen(s) for s in SPLITS}  # the same on every call
    ids = {s: {r["id"] for r in recs} for s, recs in splits.items()}
    assert len(ids["test"]) == len(splits["test"]) == 120 and len(ids["validation"]) == 48
    assert not (ids["train"] & ids["test"]) and not (ids["train"] & ids["validation"])
    assert not (ids["validation"] & ids["test"])
    questions = [r["question"] for recs in splits.values() for r in recs]
    assert len(set(questions)) == len(questions)


def test_unseen_tasks_have_no_train_split():
    assert set(TRAINING.values()) == {"add_word", "fn_arith", "where_person"}
    assert set(UNSEEN.values()) == {"sub_word", "fn_string", "where_crowd"}
    for name in UNSEEN.values():
        with pytest.raises(ValueError, match="unseen task: it has no train split"):
            tiny_task(name, "train")


@pytest.mark.parametrize("family,op", [("add_word", lambda a, b: a + b), ("sub_word", lambda a, b: a - b)])
def test_word_problem_answers_are_right(family, op):
    for split in ("validation", "test"):
        for r in FAMILIES[family](split):
            a, b = map(int, r["id"].split("-")[1:])
            assert r["answer"] == str(op(a, b)) and str(a) in r["question"] and str(b) in r["question"]


@pytest.mark.parametrize("family", ["fn_arith", "fn_string"])
def test_code_problems_accept_their_solution_and_reject_a_wrong_one(family):
    records = [r for s in SPLITS for r in FAMILIES[family](s)]
    right = score_code_many([r["solution"] for r in records], [r["tests"] for r in records],
                            entry_points=[r["entry_point"] for r in records])
    assert all(s.correct for s in right), [s.detail for s in right if not s.correct][:3]
    wrong = [re.sub(r"return (.*)", r"return repr(\1) + 'x'", r["solution"]) for r in records[:20]]
    scores = score_code_many(wrong, [r["tests"] for r in records[:20]],
                             entry_points=[r["entry_point"] for r in records[:20]])
    assert not any(s.correct for s in scores)


def _replay(question):
    """Re-reads a where_person / where_crowd story: where each person went last, and who is asked."""
    where, asked = {}, None
    for sentence in re.findall(r"[^.?]+[.?]", question):
        sentence = sentence.strip()
        if m := re.fullmatch(r"(\w+) \w+ to the (\w+)\.", sentence):
            where[m.group(1)] = m.group(2)
        elif m := re.fullmatch(r"Where is (\w+)\?", sentence):
            asked = m.group(1)
        else:
            raise AssertionError(f"unexpected sentence {sentence!r}")
    return where[asked]


@pytest.mark.parametrize("family", ["where_person", "where_crowd"])
def test_where_answers_follow_from_the_story(family):
    """Recomputes every answer from the question text alone, sentence by sentence."""
    records = [r for s in SPLITS for r in FAMILIES[family](s)]
    assert all(_replay(r["question"]) == r["answer"] for r in records)
    # the answer is not simply the first or the last place the story names
    places = [re.findall(r"the (\w+)\.", r["question"]) for r in records]
    first = sum(p[0] == r["answer"] for p, r in zip(places, records)) / len(records)
    last = sum(p[-1] == r["answer"] for p, r in zip(places, records)) / len(records)
    assert first < 0.6 and last < 0.8, (first, last)


def test_reasoning_tasks_score_the_first_place_named():
    task = tiny_task("where_person", "test")
    sid = task.ids[0]
    r = task.record(sid)
    other = next(p for p in r["places"] if p != r["answer"])
    assert task.score(sid, f"In the {r['answer']}.").correct
    assert task.score(sid, f"The {r['answer'].upper()}, not the {other}").correct
    assert not task.score(sid, f"The {other}, not the {r['answer']}").correct
    assert not task.score(sid, "Nobody knows.").correct
    assert task.build_prompt(r).messages[-1].content.endswith("\nAnswer with a place.")


def test_classification_uses_training_prompts_only():
    prompts = {}
    for name, spec in TINY_TASKS.items():
        for split in ("train", "validation", "test"):
            if spec.role == "unseen" and split == "train":
                continue
            task = tiny_task(name, split)
            prompts[(name, split)] = {task.build_prompt(task.record(s)).messages[-1].content for s in task.ids}
    train_prompts = set().union(*(prompts[(TRAINING[c], "train")] for c in TRAINING))
    held_out = set().union(*(v for (n, s), v in prompts.items() if s != "train"))
    seen = {}
    for split in ("train", "validation", "test"):
        task = classification_task(split)
        questions = [task.record(s)["question"] for s in task.ids]
        assert set(questions) <= train_prompts and not set(questions) & held_out
        seen[split] = set(questions)
    assert not seen["train"] & seen["test"] and not seen["validation"] & seen["test"]
    test = classification_task("test")
    cats = [test.record(s)["category"] for s in test.ids]
    assert {c: cats.count(c) for c in set(cats)} == {"math": 40, "code": 40, "reasoning": 40}


def test_classification_answers_are_read_from_the_box():
    task = classification_task("test")
    sid = next(s for s in task.ids if task.record(s)["category"] == "code")
    assert task.score(sid, "code}").correct  # the answer is primed with "Classification: \boxed{"
    assert not task.score(sid, "math}").correct
    assert score_category("Classification: \\boxed{ Reasoning }", "reasoning").correct
    assert score_category("I think it is code", "code").extracted is None
