"""Symbolic equivalence of two LaTeX answers with math-verify, bounded so that scoring never hangs.

math-verify (the MATH judge of the Hugging Face evaluation stack) parses LaTeX into SymPy and
compares numbers, expressions, sets, intervals and matrices: it sees that ``\\binom{5}{2}`` is 10,
``5!`` is 120, ``\\log_2 8`` is 3, ``\\sin x`` is ``\\sin(x)`` and ``e^2`` is ``\\exp(2)``.

Its own timeout is ``signal.alarm``, which works only in the main thread (a `fishfarm.Task` with
``score_workers > 1`` scores in a thread pool), and which cannot stop one long C-level operation
such as computing ``9^{9^{9}}``. So answers whose evaluation could be huge are refused before
SymPy sees them (`too_costly` says why; the caller decides without SymPy), and the alarm is used
where it works: in the main thread on POSIX.
"""
from __future__ import annotations

import logging
import os
import re
import threading
from functools import lru_cache

MAX_CHARS = 300             # longest MATH test reference: 81 characters
MAX_DIGITS = 1000           # an integer literal longer than this is no answer
MAX_EXPONENT = 10_000       # 2^{9999} has 3,010 digits: computed at once
MAX_SYMBOLIC_EXPONENT = 200  # comparing (x+1)^{n} with x^{n}+1: 0.8 s at n=200, 10 s at 1000
MAX_FACTORIAL = 10_000      # 2004! (5,700 digits) is a MATH test answer
MAX_BINOMIAL = 100_000
TIMEOUT_S = 5               # per parse and per comparison, main thread only


class _QuietTimeoutNotice(logging.Filter):
    """Drops math-verify's "Timeout is disabled" warning: off the main thread the inputs are
    bounded by `too_costly` instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Timeout is disabled")


for _name in ("math_verify.parser", "math_verify.grader"):
    logging.getLogger(_name).addFilter(_QuietTimeoutNotice())


def _timeout() -> int | None:
    """Returns math-verify's timeout in seconds where its signal-based alarm works, else None."""
    main = threading.current_thread() is threading.main_thread()
    return TIMEOUT_S if os.name == "posix" and main else None


def _group_after(s: str, i: int) -> str:
    """Returns the operand starting at s[i]: a brace group's content, a command or a digit run."""
    while i < len(s) and s[i] == " ":
        i += 1
    if i < len(s) and s[i] == "{":
        depth = 0
        for j in range(i, len(s)):
            depth += {"{": 1, "}": -1}.get(s[j], 0)
            if depth == 0:
                return s[i + 1:j]
        return s[i + 1:]
    m = re.match(r"\\[a-zA-Z]+|\d+|.", s[i:])
    return m.group(0) if m else ""


def _group_before(s: str, i: int) -> str:
    """Returns the operand ending just before s[i] (the operand of a factorial sign)."""
    j = i
    while j > 0 and s[j - 1] == " ":
        j -= 1
    if j > 0 and s[j - 1] in ")}]":
        depth, k = 0, j - 1
        while k >= 0:
            depth += (s[k] in ")}]") - (s[k] in "({[")
            if depth == 0:
                return s[k + 1:j - 1]
            k -= 1
        return s[:j]
    m = re.search(r"\d+$|[a-zA-Z]$", s[:j])
    return m.group(0) if m else ""


def _ints(s: str) -> list[int]:
    return [int(d) for d in re.findall(r"\d+", s)]


def too_costly(latex: str) -> str | None:
    """Returns why SymPy might not finish on `latex` in reasonable time, or None if it will."""
    if len(latex) > MAX_CHARS:
        return f"longer than {MAX_CHARS} characters"
    if any(len(d) > MAX_DIGITS for d in re.findall(r"\d+", latex)):
        return f"a number longer than {MAX_DIGITS} digits"
    plain = re.sub(r"\\(?:begin|end)\{[a-zA-Z*]*\}|\\[a-zA-Z]+", " ", latex)  # commands out
    symbolic = bool(re.search(r"[a-zA-Z]", plain))
    for m in re.finditer(r"\^", latex):
        exponent = _group_after(latex, m.end())
        if ("^" in exponent or "!" in exponent) and not re.search(r"[a-zA-Z]", exponent):
            return f"a tower of powers ^{{{exponent}}}"
        limit = MAX_SYMBOLIC_EXPONENT if symbolic else MAX_EXPONENT
        if any(n > limit for n in _ints(exponent)):
            return f"exponent {exponent} above {limit}"
    for m in re.finditer(r"!", latex):
        operand = _group_before(latex, m.start())
        if "^" in operand or "!" in operand or any(n > MAX_FACTORIAL for n in _ints(operand)):
            return f"factorial of {operand} too large"
    for m in re.finditer(r"\\[dt]?binom", latex):
        if any(n > MAX_BINOMIAL for n in _ints(_group_after(latex, m.end()))):
            return "binomial coefficient too large"
    return None


@lru_cache(maxsize=8192)
def _parse(latex: str, timeout: int | None) -> tuple:
    # A reference is parsed once per run, not once per sampled answer. math-verify (and SymPy,
    # 0.7 s) is imported on first use: most tasks never compare LaTeX.
    from math_verify import LatexExtractionConfig, parse
    return tuple(parse("\\boxed{" + latex + "}", extraction_config=[LatexExtractionConfig()],
                       parsing_timeout=timeout))


def symbolic_equal(prediction: str, reference: str) -> bool | None:
    """Returns math-verify's verdict on two LaTeX answers, or None if either is `too_costly`.

    Args:
        prediction: the model's answer (LaTeX, without ``\\boxed{}``).
        reference: the reference answer; math-verify treats it as the gold side (it solves
            ``x = 3`` on that side only).
    """
    if too_costly(prediction) or too_costly(reference):
        return None
    timeout = _timeout()
    gold, target = _parse(reference, timeout), _parse(prediction, timeout)
    if not gold or not target:
        return False
    from math_verify import verify
    return bool(verify(list(gold), list(target), timeout_seconds=timeout))
