"""Answer extraction as the official code does it, reported beside the kit's scorers.

The paper's numbers were scored by the official evaluation (SakanaAI's fishfarm); the kit's
scorers read answers more carefully (`numbers`, `math_equiv`, `choice`). These functions give the
official verdicts, so a result can be read both ways (`fishfarm.task.Task(official_scorer=...)`
adds "accuracy_official" to its metrics):

- GSM8K (``extract_answer_number``): the last match of ``\\d*\\.?\\d+`` in the answer, as a float,
  equal to the reference integer. No sign, and a thousands separator splits the number
  ("1,234" reads as 234).
- MATH: the official ``is_equiv`` (`fishfarm.scoring.math_official`, `score_math(mode="official")`).
- ARC (``extract_answer``): "answer is (X)", else "answer: X", else the last standalone capital
  letter A-J; with no letter at all, a guess drawn after ``random.seed(42)`` (the same option for
  every question with as many options). The official code compares the letter with ARC's
  answerKey, which is a digit for a few questions (those are never right there); the kit compares
  with the letter of the gold option's position, as the prompt shows it.
"""
from __future__ import annotations

import random
import re
from typing import Sequence

from fishfarm.types import Score

_ARC_LETTERS = "ABCDE"


def gsm8k_number_official(text: str) -> float | None:
    """Returns the last unsigned number in `text` as the official GSM8K task reads it."""
    matches = re.findall(r"\d*\.?\d+", text)
    return float(matches[-1].replace(",", "")) if matches else None


def score_gsm8k_official(answer: str, gold: str | float | int) -> Score:
    """Returns the official GSM8K verdict: the last number equals the reference."""
    predicted = gsm8k_number_official(answer)
    target = float(str(gold).replace(",", ""))
    correct = predicted is not None and predicted == target
    return Score(correct, None if predicted is None else f"{predicted:g}", "" if correct else "official: last number")


def arc_letter_official(text: str) -> str | None:
    """Returns the letter the official ARC task reads from an answer, or None."""
    for pattern, flags in ((r"answer is \(?([A-J])\)?", 0), (r".*[aA]nswer:\s*([A-J])", 0)):
        match = re.search(pattern, text, flags)
        if match:
            return match.group(1)
    match = re.search(r"\b[A-J]\b(?!.*\b[A-J]\b)", text, re.DOTALL)
    return match.group(0) if match else None


def arc_guess_official(num_options: int) -> str:
    """Returns the official fallback guess for a question with `num_options` options."""
    rng = random.Random(42)
    return _ARC_LETTERS[rng.randint(0, num_options - 1)]


def score_arc_official(answer: str, gold_index: int, options: Sequence[str]) -> Score:
    """Returns the official ARC verdict (module docstring), the guess counted as an answer."""
    letter = arc_letter_official(answer)
    guessed = letter is None
    if guessed:
        letter = arc_guess_official(len(options))
    correct = letter == _ARC_LETTERS[gold_index]
    return Score(correct, letter, "official: seeded guess" if guessed else "")
