"""Multiple-choice scoring: letters in every common format, or the option's text."""
import pytest

from fishfarm.scoring import extract_choice, score_choice, score_name

OPTIONS = ["evaporation", "condensation", "precipitation", "water vapor condensation"]


@pytest.mark.parametrize("answer, label", [
    ("(B)", "B"), ("B.", "B"), ("B", "B"), ("B) condensation", "B"),
    ("The answer is B", "B"), ("The answer is (B).", "B"), ("Answer: C", "C"), ("Answer:B", "B"),
    ("**Answer: D**", "D"), ("The correct answer is option C because it rains.", "C"),
    (r"\boxed{B}", "B"), (r"$\boxed{\text{(B)}}$", "B"), (r"\boxed{condensation}", "B"),
    ("A dog would not do that. The answer is B.", "B"),
    ("Let's think. A. evaporation B. condensation C. precipitation. Answer: B", "B"),
    ("Water vapor turns to liquid: (D) is right", "D"),
    ("I think it is evaporation.", "A"), ("condensation", "B"),
    ("Water vapor condensation happens on the glass", "D"),
    ("The answer is a result of evaporation", "A"),
])
def test_extracts_the_choice(answer, label):
    assert extract_choice(answer, "ABCD", options=OPTIONS) == label


@pytest.mark.parametrize("answer", [
    "A dog would not do that.", "It is either evaporation or precipitation.", "answer is b",
    "I am not sure.", "",
])
def test_no_clear_choice_is_none(answer):
    assert extract_choice(answer, "ABCD", options=OPTIONS) is None


def test_numeric_labels_and_index_gold():
    labels = ["1", "2", "3", "4"]
    assert score_choice("The answer is 3", "3", labels=labels).correct
    assert score_choice("(2)", 1, labels=labels).correct
    assert not score_choice("(2)", 0, labels=labels).correct


def test_score_reports_what_was_picked():
    wrong = score_choice("The answer is (A).", "B", options=OPTIONS)
    assert not wrong.correct and wrong.extracted == "A" and "B" in wrong.detail
    assert score_choice("condensation", "B", options=OPTIONS).correct
    with pytest.raises(ValueError, match="not one of the labels"):
        score_choice("A", "E")


@pytest.mark.parametrize("answer,picked", [
    ("The key is in the garden, not the park.", "garden"),
    ("park. Then the garden", "park"),
    ("GARDEN", "garden"),
    ("The gardener has it.", None),  # whole words only
    ("I cannot tell.", None),
])
def test_score_name_reads_the_first_name_mentioned(answer, picked):
    score = score_name(answer, "garden", ["park", "garden"])
    assert score.extracted == picked and score.correct == (picked == "garden")


def test_score_name_refuses_a_gold_outside_the_names():
    with pytest.raises(ValueError, match="'attic' is not one of the names"):
        score_name("attic", "attic", ["park", "garden"])
