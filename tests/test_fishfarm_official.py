"""The official code's answer extraction, reported beside the kit's scorers, and the official ARC
answer start (both switchable protocol details of the paper suite)."""

from fishfarm.data.prompts import LLAMA3_COT_PREFIX
from fishfarm.scoring import score_choice, score_number
from fishfarm.scoring.official import (arc_guess_official, arc_letter_official, gsm8k_number_official,
                                       score_arc_official, score_gsm8k_official)
from fishfarm.task import Task
from fishfarm.types import GenerationResult, Score


def test_gsm8k_official_reads_the_last_unsigned_number():
    assert gsm8k_number_official("She has 3 apples, then 12. The answer is 15.") == 15.0
    assert gsm8k_number_official("It costs 1,234 dollars") == 234.0  # the separator splits the number
    assert gsm8k_number_official("no digits") is None
    assert score_gsm8k_official("so -7 degrees", 7).correct  # no sign: -7 reads as 7
    assert not score_number("so -7 degrees", 7).correct  # the kit keeps the sign
    assert not score_gsm8k_official("The answer is 15. Check: 15 + 1 = 16", 15).correct  # the last number
    assert score_number("The answer is 15. Check: 15 + 1 = 16", 15).correct is not None


def test_arc_official_extraction_and_its_seeded_guess():
    assert arc_letter_official("... so the answer is (C).") == "C"
    assert arc_letter_official("Answer: B because") == "B"
    assert arc_letter_official("I pick D here") == "D"
    assert arc_letter_official("none of these") is None
    # random.seed(42); randint(0, n - 1), the same guess for every question with n options
    assert [arc_guess_official(n) for n in (3, 4, 5)] == ["C", "A", "A"]
    options = ["rock", "water", "air", "fire"]
    assert score_arc_official("no letter at all", 0, options) == Score(True, "A", "official: seeded guess")
    assert not score_arc_official("no letter at all", 1, options).correct
    assert not score_choice("no letter at all", 0, options=options).correct  # the kit does not guess


def test_a_task_reports_the_official_accuracy_beside_its_own():
    class Fixed:
        def __init__(self, answers):
            self.answers = answers

        def generate(self, requests, progress=None):
            return [GenerationResult(a, (1,), "eos", 3) for a in self.answers]

    records = [{"id": "a", "gold": 7}, {"id": "b", "gold": 12}]
    task = Task("t", records, id_field="id", prompt=lambda r: "q", scorer=lambda a, r: score_number(a, r["gold"]),
                official_scorer=lambda a, r: score_gsm8k_official(a, r["gold"]))
    result = task.evaluate(Fixed(["it is -7", "12"]))
    assert result.metrics["accuracy"] == 0.5 and result.metrics["accuracy_official"] == 1.0
    assert [s.official for s in result.samples] == [True, True]
    plain = Task("t", records, id_field="id", prompt=lambda r: "q", scorer=lambda a, r: score_number(a, r["gold"]))
    result = plain.evaluate(Fixed(["7", "1"]))
    assert "accuracy_official" not in result.metrics and result.samples[0].official is None


def test_the_arc_answer_start_is_a_preset_switch():
    from t2lib.presets import get_preset, with_options

    rehearsal = get_preset("rehearsal")
    plain = rehearsal.task("arc_challenge", "test")
    prompt = plain.request(plain.ids[0]).prompt
    assert not prompt.continues_response and plain.official_scorer is not None
    cot = with_options(rehearsal, backend="hf", arc_cot=True)
    assert cot.arc_cot_prefix and not rehearsal.arc_cot_prefix
    task = cot.task("arc_challenge", "test")
    prompt = task.request(task.ids[0]).prompt
    assert prompt.continues_response and prompt.messages[-1].content == LLAMA3_COT_PREFIX
    gsm = cot.task("gsm8k", "test")  # the other tasks are unchanged
    assert not gsm.request(gsm.ids[0]).prompt.continues_response
    assert cot.task("add_word", "test", suite="tiny").ids  # suites without ARC ignore the switch
