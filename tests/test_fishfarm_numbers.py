"""GSM8K-style final-number scoring on real-looking answers."""
import pytest

from fishfarm.scoring import extract_final_number, parse_number, score_number

GSM8K_REFERENCE = ("Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n"
                   "Natalia sold 48+24 = <<48+24=72>>72 clips altogether in April and May.\n"
                   "#### 72")


@pytest.mark.parametrize("text, value", [
    ("#### 1,234", 1234),
    ("She earns 12 * 3 = 36 dollars.\n#### 1,234", 1234),
    ("So the total cost is $18.00.", 18),
    ("Janet makes 18 dollars every day at the farmers' market.", 18),
    ("First 3 + 4 = 7, then 7 * 2 = 14. The answer is 18.", 18),
    ("The answer is: $1,000. After that she buys 5 more.", 1000),
    ("Answer: 50%", 50),
    ("The temperature drops to -5 degrees.", -5),
    ("The balance is −12 after the refund.", -12),
    ("-$7 is what he owes", -7),
    ("The town has 1,234,567 people.", 1234567),
    ("He ends with 5 - 3 = 2 apples left", 2),
    ("Each gets 3/4 of a pie", 0.75),
    ("The answer is 3/4.", 0.75),
    ("So each friend gets 3/4.\nThe answer is 3/4.", 0.75),
    ("The answer is -1/2.", -0.5),
    ("The answer is \\boxed{1{,}000}.", 1000),
    ("so x = \\boxed{42} and then 7 more", 42),
    ("It takes 2.5 hours.", 2.5),
    ("It costs .5 dollars", 0.5),
    ("The answer is 18.\n\nQuestion: Tom has 3 apples", 18),
])
def test_extracts_the_final_number(text, value):
    assert extract_final_number(text) == pytest.approx(value)


def test_no_number_is_none():
    assert extract_final_number("I do not know.") is None
    assert parse_number("") is None


def test_thousands_separator_is_not_a_list():
    assert parse_number("1,234") == 1234
    assert extract_final_number("values 1,2 and 3") == 3  # not 123


def test_scores_against_a_gsm8k_reference():
    assert score_number("They sold 72 clips.", GSM8K_REFERENCE).correct
    assert score_number("The answer is $72.00", GSM8K_REFERENCE).correct
    wrong = score_number("The answer is 71.", GSM8K_REFERENCE)
    assert not wrong.correct and wrong.extracted == "71" and "72" in wrong.detail
    assert not score_number("No idea.", GSM8K_REFERENCE).correct
    assert score_number("#### -3", -3).correct
    assert score_number("0.1 + 0.2 = 0.30000000000000004", 0.3).correct


def test_reference_without_number_is_named():
    with pytest.raises(ValueError, match="no number in the reference"):
        score_number("42", "unknown")
