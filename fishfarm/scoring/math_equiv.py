"""Scores MATH-style answers: extracts the boxed answer and decides equivalence with the reference.

Equivalence, in order: equal after normalization (``\\dfrac12`` -> ``\\frac{1}{2}``, units in
``\\text{}`` dropped, ``x = 3`` -> ``3``, ``$``, ``\\left``, ``^\\circ``, ``\\%`` and spaces
removed); then tuples and intervals element by element with their brackets (``[1,2)`` differs
from ``[1,2]``), sets and bare answer lists ("-2, 3") in any order; then numeric value
(``0.5`` = ``1/2`` = ``\\frac{1}{2}``; expressions with variables are compared at fixed random
points, so ``2x+1`` = ``1+2x``). Follows Hendrycks et al.'s ``is_equiv`` and Minerva's
normalization, with the numeric step added.
"""
from __future__ import annotations

import math
import re

from fishfarm.scoring.boxed import last_boxed
from fishfarm.scoring.latex_eval import LatexEvalError, evaluate, variables_of
from fishfarm.types import Score

_UNITS = ("cm", "m", "km", "mm", "inches", "inch", "in", "feet", "foot", "ft", "yards", "miles",
          "meters", "units", "unit", "degrees", "degree", "dollars", "dollar", "cents", "hours",
          "hour", "minutes", "minute", "seconds", "second", "days", "sq", "square", "mph", "pounds")
_UNIT_WORDS = "|".join(sorted(_UNITS, key=len, reverse=True))
_FINAL_PHRASE = re.compile(r"final answer is\s*\$?(.+?)\$?\s*(?:\.\s*I hope|\.?\s*$)",
                           re.IGNORECASE | re.S)
_POINTS = ({"x": 0.37, "y": 1.91, "z": -0.64}, {"x": 2.13, "y": -0.77, "z": 1.58},
           {"x": -1.42, "y": 0.53, "z": 2.71})
_OPENERS = {"(": ")", "[": "]", "\\{": "\\}"}


def extract_math_answer(text: str) -> str | None:
    """Returns the answer of a MATH-style solution: the last ``\\boxed{}``, else the text after
    "final answer is" (Minerva's format), else None."""
    boxed = last_boxed(text)
    if boxed is not None:
        return boxed
    m = _FINAL_PHRASE.search(text)
    return m.group(1).strip() if m else None


def normalize_math_answer(answer: str) -> str:
    """Returns a canonical string form of a LaTeX answer (see module docstring)."""
    s = answer.strip().replace("\n", " ")
    s = re.sub(r"\\(?:displaystyle|left|right|!|,|;|:)", "", s).replace("\\ ", " ")
    s = s.replace("\\$", "").replace("$", "")
    s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    s = re.sub(r"\^\s*\{?\\circ\}?", "", s)
    s = s.replace("\\%", "").replace("%", "").replace("{,}", ",")
    # Units: a trailing \text{ cm} (maybe squared) after a value is dropped; other \text{}
    # are unwrapped.
    s = re.sub(r"(\S.*?)\s*\\(?:text|mbox|mathrm)\{\s*[a-zA-Z .]*\}(\^\{?\d\}?)?\s*$", r"\1", s)
    s = re.sub(r"\\(?:text|textbf|mbox|mathrm|mathbf)\{([^{}]*)\}", r"\1", s)
    s = re.sub(rf"^([-\d.,/ ]+?)\s*(?:{_UNIT_WORDS})\b\.?(\^\{{?\d\}}?)?$", r"\1", s)
    if s.count("=") == 1:  # "x = 3" -> "3"; "y = 2x + 1" -> "2x + 1"
        m = re.fullmatch(r"\s*[a-zA-Z](?:_\{?\w+\}?)?\s*=\s*(.+)", s)
        s = m.group(1) if m else s
    s = re.sub(r"^\s*[a-zA-Z]\s*\\in\s*", "", s)
    s = re.sub(r"\\frac(\d)(\d)", r"\\frac{\1}{\2}", s)
    s = re.sub(r"\\frac(\d)\{", r"\\frac{\1}{", s)
    s = re.sub(r"\\frac\{([^{}]*)\}(\d)", r"\\frac{\1}{\2}", s)
    s = re.sub(r"\\sqrt(\d+|[a-zA-Z](?![a-zA-Z]))", r"\\sqrt{\1}", s)
    s = s.replace(" ", "")
    if re.fullmatch(r"-?\d{1,3}(,\d{3})+(\.\d+)?", s):  # 10,000 is a number, not a list
        s = s.replace(",", "")
    s = re.sub(r"(?<!\d)\.(\d)", r"0.\1", s)
    return s.rstrip(".")


def _split_top(s: str, sep: str = ",") -> list[str]:
    """Returns `s` split at `sep` outside any brackets or braces."""
    parts, depth, start, i = [], 0, 0, 0
    while i < len(s):
        if s[i] in "([{":
            depth += 1
        elif s[i] in ")]}":
            depth -= 1
        elif depth == 0 and s.startswith(sep, i):
            parts.append(s[start:i])
            start = i + len(sep)
            i = start
            continue
        i += 1
    return parts + [s[start:]]


def _structure(s: str) -> tuple[str, list[str], str] | None:
    """Returns (opener, items, closer) for a tuple, interval or set spanning all of `s`."""
    for opener in _OPENERS:
        if not s.startswith(opener):
            continue
        closer = next((c for c in (")", "]", "\\}") if s.endswith(c)), None)
        inner = s[len(opener):len(s) - len(closer)] if closer else ""
        if closer is None or len(_split_top(inner)) < 2:
            return None
        depth = 0  # the opener must close at the very end, not earlier: "(1)+(2,3)" is no tuple
        for ch in inner:
            depth += (ch in "([{") - (ch in ")]}")
            if depth < 0:
                return None
        return opener, _split_top(inner), closer
    return None


def _unordered_equal(a: list[str], b: list[str]) -> bool:
    rest = list(b)
    for item in a:
        match = next((j for j, other in enumerate(rest) if math_equal(item, other)), None)
        if match is None:
            return False
        rest.pop(match)
    return not rest


def _value_equal(a: str, b: str) -> bool:
    try:
        names = variables_of(a) | variables_of(b)
        if variables_of(a) != variables_of(b) or not names <= {"x", "y", "z"}:
            return False
        points = _POINTS if names else ({},)
        return all(math.isclose(evaluate(a, p), evaluate(b, p), rel_tol=1e-8, abs_tol=1e-12)
                   for p in points)
    except LatexEvalError:
        return False


def math_equal(prediction: str, reference: str) -> bool:
    """Returns whether two MATH answers are equivalent (see module docstring)."""
    a, b = normalize_math_answer(prediction), normalize_math_answer(reference)
    if a == b:
        return True
    if not a or not b:
        return False
    if "\\cup" in a or "\\cup" in b:
        pa, pb = _split_top(a, "\\cup"), _split_top(b, "\\cup")
        return len(pa) == len(pb) and all(math_equal(x, y) for x, y in zip(pa, pb))
    sa, sb = _structure(a), _structure(b)
    if sa or sb:
        if not (sa and sb) or sa[0] != sb[0] or sa[2] != sb[2] or len(sa[1]) != len(sb[1]):
            return False
        if sa[0] == "\\{":  # a set: order does not matter
            return _unordered_equal(sa[1], sb[1])
        return all(math_equal(x, y) for x, y in zip(sa[1], sb[1]))
    la, lb = _split_top(a), _split_top(b)
    if len(la) > 1 or len(lb) > 1:  # "all solutions" lists: order does not matter
        return len(la) == len(lb) and _unordered_equal(la, lb)
    return _value_equal(a, b)


def score_math(answer: str, reference: str) -> Score:
    """Returns whether the model's boxed answer is equivalent to the reference.

    Args:
        answer: the model's full answer text.
        reference: the reference answer, or a full MATH solution (its last ``\\boxed{}`` is used).
    """
    gold = last_boxed(reference)
    gold = reference if gold is None else gold
    predicted = extract_math_answer(answer)
    if predicted is None:
        return Score(False, None, "no \\boxed{} answer")
    ok = math_equal(predicted, gold)
    return Score(ok, predicted, "" if ok else f"expected {gold}")
