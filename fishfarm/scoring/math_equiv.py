"""Scores MATH-style answers: extracts the boxed answer and decides equivalence with the reference.

Two modes. "kit" (the default), in order:
1. equal after normalization (``\\dfrac12`` -> ``\\frac{1}{2}``, units in ``\\text{}`` dropped,
   ``x = 3`` -> ``3``; ``$``, ``\\left``, ``^\\circ``, ``\\%``, thin spaces and spaces removed, but
   a space that ends a command name stays: ``\\sin x``; matrix rows ``\\\\`` stay whole);
2. tuples and intervals element by element with their brackets (``[1,2)`` differs from
   ``[1,2]``, ``(1, 2)`` from the list ``1, 2``, which math-verify equates), sets and bare
   answer lists ("-2, 3") in any order, unions of intervals part by part;
3. answers with a word (``\\text{Evelyn}``, ``odd``) compare as text, never as products of
   letters (math-verify reads ``odd`` as o·d·d, and equates ``abc`` with ``cba``);
4. math-verify (`fishfarm.scoring.symbolic`) on the normalized forms, so ``25\\%`` is 25 and
   not 1/4 as math-verify reads it alone; an answer SymPy could not finish on (``9^{9^{9}}``)
   is compared by the kit's own evaluator (`fishfarm.scoring.latex_eval`) instead.

"official": the official code's ``is_equiv`` and answer extraction
(`fishfarm.scoring.math_official`), to compare with the paper's numbers.
"""
from __future__ import annotations

import math
import re
from typing import Literal

from fishfarm.scoring.boxed import last_boxed
from fishfarm.scoring.latex_eval import LatexEvalError, evaluate, variables_of
from fishfarm.scoring.math_official import extract_answer_official, is_equiv_official
from fishfarm.scoring.symbolic import symbolic_equal
from fishfarm.types import Score

MathMode = Literal["kit", "official"]

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


# A row separator \\ stays; \left, \right, \displaystyle and thin spaces go; "\ " is a space.
_SPACING = re.compile(r"\\\\|\\(?:displaystyle|textstyle|left|right|[bB]igg?[lr]?|q?quad)"
                      r"(?![a-zA-Z])|\\[!,;: ]")
_TOKEN = re.compile(r"\\\\|\\[a-zA-Z]+|\\.|\s+|.", re.S)
_FUNCTION_NAMES = re.compile(r"arc(?:sin|cos|tan)|sin|cos|tan|cot|sec|csc|log|ln|exp|sqrt|pi")


def _respace(match: re.Match) -> str:
    token = match.group(0)
    return token if token == "\\\\" else " " if token == "\\ " else ""


def _compact(s: str) -> str:
    """Returns `s` without spaces, except one where it ends a command name before a letter
    (``\\sin x``, ``\\pi r``): the only place where removing it changes the LaTeX."""
    return join_compact(_TOKEN.findall(s))


def join_compact(tokens: list[str]) -> str:
    """Returns LaTeX tokens joined without the white-space tokens LaTeX ignores (`_compact`)."""
    out = []
    for i, tok in enumerate(tokens):
        if not tok.isspace():
            out.append(tok)
        elif (out and re.fullmatch(r"\\[a-zA-Z]+", out[-1]) and i + 1 < len(tokens)
              and tokens[i + 1][:1].isalpha()):
            out.append(" ")
    return "".join(out)


def normalize_math_answer(answer: str) -> str:
    """Returns a canonical string form of a LaTeX answer (see module docstring)."""
    s = _compact(_SPACING.sub(_respace, answer.strip()))
    s = s.replace("\\$", "").replace("$", "")
    s = re.sub(r"\\[dtc]frac(?![a-zA-Z])", r"\\frac", s)
    s = re.sub(r"\^\{?\\circ\}?", "", s)
    s = s.replace("\\%", "").replace("%", "").replace("{,}", ",")
    s = re.sub(r",?\s*\\(?:text|mbox|mathrm)\s*\{\s*and\s*\}\s*", ",", s)  # "12\text{ and }13"
    # Units: a trailing \text{ cm} (maybe squared) after a value is dropped (not the last item
    # of a list: "\text{Monday}, \text{Friday}"); other \text{} are unwrapped.
    s = re.sub(r"([^,\s](?:.*?[^,])?)\s*\\(?:text|mbox|mathrm)\s*\{\s*[a-zA-Z .]*\}(\^\{?\d\}?)?\s*$",
               r"\1", s)
    s = re.sub(r"\\(?:text|textbf|mbox|mathrm|mathbf)\s*\{([^{}]*)\}", r"\1", s)
    s = re.sub(rf"^([-\d.,/ ]+?)\s*(?:{_UNIT_WORDS})\b\.?(\^\{{?\d\}}?)?$", r"\1", s)
    if s.count("=") == 1:  # "x = 3" -> "3"; "y = 2x + 1" -> "2x + 1"
        m = re.fullmatch(r"\s*[a-zA-Z](?:_\{?\w+\}?)?\s*=\s*(.+)", s, re.S)
        s = m.group(1) if m else s
    s = re.sub(r"^[a-zA-Z]\\in(?![a-zA-Z]) ?", "", s)
    s = re.sub(r"\\frac ?([a-zA-Z\d])([a-zA-Z\d])", r"\\frac{\1}{\2}", s)  # \frac12, \frac ab
    s = re.sub(r"\\frac ?([a-zA-Z\d])\{", r"\\frac{\1}{", s)
    s = re.sub(r"\\frac\{([^{}]*)\} ?([a-zA-Z\d])", r"\\frac{\1}{\2}", s)
    s = re.sub(r"\\sqrt ?([a-zA-Z\d])", r"\\sqrt{\1}", s)  # \sqrt3 is \sqrt{3}, \sqrt12 is 2
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


def _is_word(s: str) -> bool:
    """Returns whether a normalized answer contains a word ("Evelyn", "odd", "June20"), which
    compares as text: as a product of letters, "dog" would equal "god"."""
    commands = re.sub(r"\\(?:begin|end)\{[a-zA-Z*]*\}|\\[a-zA-Z]+", " ", s)  # \begin{pmatrix}
    letters = _FUNCTION_NAMES.sub(" ", commands)
    return bool(re.search(r"[a-zA-Z]{3,}", letters))


def _evaluated_equal(a: str, b: str) -> bool:
    """Returns whether two answers have the same value by the kit's evaluator (x, y, z are
    compared at fixed random points); used where SymPy might not finish."""
    try:
        names = variables_of(a) | variables_of(b)
        if variables_of(a) != variables_of(b) or not names <= {"x", "y", "z"}:
            return False
        points = _POINTS if names else ({},)
        return all(math.isclose(evaluate(a, p), evaluate(b, p), rel_tol=1e-8, abs_tol=1e-12)
                   for p in points)
    except LatexEvalError:
        return False


def _value_equal(prediction: str, reference: str) -> bool:
    verdict = symbolic_equal(prediction, reference)
    return _evaluated_equal(prediction, reference) if verdict is None else verdict


def math_equal(prediction: str, reference: str) -> bool:
    """Returns whether a model's MATH answer is equivalent to the reference (the "kit" mode of
    the module docstring)."""
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
    if _is_word(a) or _is_word(b):
        return a.lower() == b.lower()
    return _value_equal(a, b)


def score_math(answer: str, reference: str, *, mode: MathMode = "kit") -> Score:
    """Returns whether the model's boxed answer is equivalent to the reference.

    Args:
        answer: the model's full answer text.
        reference: the reference answer, or a full MATH solution (its last ``\\boxed{}`` is used).
        mode: "kit" (default: see the module docstring) | "official" (the official code's
            answer extraction and ``is_equiv``, for comparison with the paper's numbers).
    """
    gold = last_boxed(reference)
    gold = reference if gold is None else gold
    if mode == "official":
        predicted = extract_answer_official(answer)
        ok = predicted is not None and is_equiv_official(gold, predicted)
    elif mode == "kit":
        predicted = extract_math_answer(answer)
        ok = predicted is not None and math_equal(predicted, gold)
    else:
        raise ValueError(f"unknown MATH scoring mode {mode!r}; choose 'kit' or 'official'")
    if predicted is None:
        return Score(False, None, "no \\boxed{} answer")
    return Score(ok, predicted, "" if ok else f"expected {gold}")
