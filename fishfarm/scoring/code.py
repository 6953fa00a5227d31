"""Scores code answers (MBPP/HumanEval-style): runs the candidate against test code in the sandbox.

The answer's code is taken from its markdown fences (```python ... ```), preferring the block
that defines the entry point; an answer with no fence is taken as code. The program run is
``code + tests (+ check(entry_point))`` followed by a line printing a random token; it passes
only if it exits with status 0 *and* printed the token, so a candidate that calls ``exit(0)``
before the tests run does not pass.
"""
from __future__ import annotations

import re
import secrets
from typing import Sequence

from fishfarm.sandbox import RunResult, Sandbox
from fishfarm.types import Score

_FENCE = re.compile(r"```[ \t]*(\w+)?[^\n]*\n(.*?)(?:```|\Z)", re.S)
_PY = {None, "python", "py", "python3", "Python"}


def extract_code(answer: str, *, entry_point: str | None = None) -> str:
    """Returns the Python code of a model's answer.

    Args:
        answer: the answer text, with or without markdown fences (an unclosed final fence, from
            a cut-off answer, counts).
        entry_point: the function the tests call; the first block defining it wins.
    """
    blocks = [(lang, body) for lang, body in _FENCE.findall(answer)]
    python = [body for lang, body in blocks if lang in _PY] or [body for _, body in blocks]
    if not python:
        return answer.strip("\n")
    if entry_point:
        defining = [b for b in python if re.search(rf"def\s+{re.escape(entry_point)}\s*\(", b)]
        if defining:
            return defining[0].strip("\n")
    with_def = [b for b in python if re.search(r"^\s*(def|class)\s", b, re.M)]
    return (with_def or python)[0].strip("\n")


def build_program(code: str, tests: str, *, entry_point: str | None = None,
                  prefix: str = "") -> tuple[str, str]:
    """Returns (program, token): the code, its tests, and a final line printing `token`.

    Args:
        code: the candidate code.
        tests: test code (asserts, or a HumanEval ``def check(candidate)``).
        entry_point: when the tests define ``check``, ``check(entry_point)`` is appended; when
            `code` does not define it, `prefix` is put before `code` (completion-style answers).
        prefix: code that goes before an answer that is only a function body (HumanEval prompt).
    """
    if prefix and entry_point and not re.search(rf"def\s+{re.escape(entry_point)}\s*\(", code):
        code = prefix + code
    token = secrets.token_hex(16)
    call = f"\ncheck({entry_point})\n" if entry_point and re.search(r"def\s+check\s*\(", tests) \
        else ""
    program = (f"{code}\n\n{tests}\n{call}\n"
               f"__import__('os').write(1, b'\\n{token}\\n')\n")
    return program, token


def _score(run: RunResult, token: str, code: str) -> Score:
    if run.ok and token in run.stdout:
        return Score(True, code, "")
    if run.ok:
        return Score(False, code, "the program exited before its tests finished")
    return Score(False, code, run.reason)


def score_code(answer: str, tests: str, *, entry_point: str | None = None, prefix: str = "",
               sandbox: Sandbox | None = None) -> Score:
    """Returns whether the answer's code passes `tests` in the sandbox (detail: why not).

    Args:
        answer: the model's answer text (markdown fences are handled).
        tests: test code; see `build_program`.
        entry_point: the function under test, if any.
        prefix: the prompt code to put before a body-only answer (HumanEval).
        sandbox: where to run; default: a `Sandbox` with default limits.
    """
    code = extract_code(answer, entry_point=entry_point)
    program, token = build_program(code, tests, entry_point=entry_point, prefix=prefix)
    return _score((sandbox or Sandbox()).run(program), token, code)


def score_code_many(answers: Sequence[str], tests: Sequence[str], *,
                    entry_points: Sequence[str | None] | None = None,
                    prefixes: Sequence[str] | None = None, sandbox: Sandbox | None = None,
                    max_workers: int | None = None) -> list[Score]:
    """Returns the scores of many answers, run in parallel (see `score_code`)."""
    n = len(answers)
    if len(tests) != n:
        raise ValueError(f"got {n} answers but {len(tests)} test programs")
    entry_points = list(entry_points) if entry_points is not None else [None] * n
    prefixes = list(prefixes) if prefixes is not None else [""] * n
    codes = [extract_code(a, entry_point=e) for a, e in zip(answers, entry_points)]
    built = [build_program(c, t, entry_point=e, prefix=p)
             for c, t, e, p in zip(codes, tests, entry_points, prefixes)]
    runs = (sandbox or Sandbox()).run_many([p for p, _ in built], max_workers=max_workers)
    return [_score(r, tok, c) for r, (_, tok), c in zip(runs, built, codes)]
