"""Scores short free-text answers by exact match: the answer's final line (or the text after the
last "answer is" / "Answer:"), compared with the reference after normalizing case, surrounding
quotes and punctuation, and runs of spaces (both optional)."""
from __future__ import annotations

import re
import string

from fishfarm.scoring.boxed import last_boxed
from fishfarm.types import Score

_PHRASE = re.compile(r"(?:answer\s+is|answer\s*:)\s*:?\s*(.*)", re.IGNORECASE | re.DOTALL)


def _normalize(text: str, *, case_sensitive: bool, punctuation: bool) -> str:
    text = " ".join(text.split())
    if not punctuation:
        text = text.strip(string.punctuation + " ").strip()
    return text if case_sensitive else text.lower()


def extract_exact(answer: str) -> str:
    """Returns the part of an answer that exact match compares: the last \\boxed{}, else the text
    after the last "answer is" / "Answer:", else the last non-empty line."""
    boxed = last_boxed(answer)
    if boxed is not None:
        return boxed
    found = _PHRASE.findall(answer)
    if found:
        return found[-1].strip().splitlines()[0] if found[-1].strip() else ""
    lines = [line for line in answer.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def score_exact(answer: str, gold: str, *, case_sensitive: bool = False, punctuation: bool = False) -> Score:
    """Returns whether the answer's final part equals `gold`.

    Args:
        answer: the model's answer text.
        gold: the reference answer.
        case_sensitive: compare case too (default: "Paris" equals "paris").
        punctuation: compare leading and trailing punctuation too (default: "Paris." equals "Paris").
    """
    picked = extract_exact(answer)
    a = _normalize(picked, case_sensitive=case_sensitive, punctuation=punctuation)
    b = _normalize(str(gold), case_sensitive=case_sensitive, punctuation=punctuation)
    return Score(a == b, picked, "" if a == b else f"expected {gold!r}")
