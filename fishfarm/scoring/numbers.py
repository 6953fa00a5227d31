"""Scores GSM8K-style answers: reads the final number and compares it numerically.

Where the answer's number is taken from, in order: the ``#### N`` marker of GSM8K references,
the last ``\\boxed{}``, the last "answer is N" / "Answer: N" phrase, then the last number in the
text. Thousands separators, currency signs, units ("18 dollars"), percent signs, a trailing
period, unicode minus and simple fractions (3/4) are understood.
"""
from __future__ import annotations

import math
import re

from fishfarm.scoring.boxed import last_boxed
from fishfarm.types import Score

# 1,234,567 | 1234 | 12.5 | .5 ; optional sign (ASCII or unicode minus) and currency sign.
_NUM = r"(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?|\.\d+"
_NUMBER = re.compile(rf"(?<![\w.])(?P<sign>[-−–]?)\s?\$?\s?(?P<num>{_NUM})"
                     rf"(?:\s*/\s*(?P<den>\d+)(?!\d|\.\d))?")  # "is 3/4." is 0.75
_MARKER = re.compile(r"####\s*(.*)")
_PHRASE = re.compile(r"(?:answer\s+is|answer\s*:|answer\s+would\s+be|result\s+is)\s*:?\s*(.*)",
                     re.IGNORECASE)


def parse_number(text: str) -> float | None:
    """Returns the first number in `text` as a float ("$1,234.50" -> 1234.5), or None."""
    m = _NUMBER.search(text)
    if not m:
        return None
    value = float(m.group("num").replace(",", ""))
    if m.group("den"):
        den = float(m.group("den"))
        if den == 0:
            return None
        value /= den
    return -value if m.group("sign") else value


def _last_number(text: str) -> float | None:
    matches = list(_NUMBER.finditer(text))
    return parse_number(matches[-1].group(0)) if matches else None


def extract_final_number(text: str) -> float | None:
    """Returns the final numeric answer in a model's answer or a GSM8K reference, or None."""
    marker = _MARKER.findall(text)
    if marker:
        return parse_number(marker[-1])
    boxed = last_boxed(text)
    if boxed is not None and parse_number(boxed) is not None:
        return parse_number(boxed.replace("{,}", ","))
    phrases = _PHRASE.findall(text)
    for phrase in reversed(phrases):
        value = parse_number(phrase.split("\n")[0])
        if value is not None:
            return value
    return _last_number(text)


def numbers_equal(a: float, b: float, *, rel_tol: float = 1e-6) -> bool:
    """Returns whether two answers are the same number (tolerant of float rounding)."""
    return math.isclose(a, b, rel_tol=rel_tol, abs_tol=1e-9)


def _fmt(x: float) -> str:
    return str(int(x)) if x == int(x) else repr(x)


def score_number(answer: str, gold: str | float | int) -> Score:
    """Returns whether the final number of `answer` equals `gold`.

    Args:
        answer: the model's answer text.
        gold: the reference: a number, or a text such as a GSM8K solution ending in "#### 72".
    """
    target = extract_final_number(gold) if isinstance(gold, str) else float(gold)
    if target is None:
        raise ValueError(f"no number in the reference answer {gold!r}; pass the number itself")
    value = extract_final_number(answer)
    if value is None:
        return Score(False, None, "no number in the answer")
    ok = numbers_equal(value, target)
    return Score(ok, _fmt(value), "" if ok else f"expected {_fmt(target)}")
