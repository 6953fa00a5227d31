"""Finds the final answer a model wrote in ``\\boxed{...}`` (or ``\\fbox{...}``, ``\\boxed 5``).

Used by the MATH scorer, the multiple-choice scorer and the prompt-based dispatch, which all
ask the model to box its answer.
"""
from __future__ import annotations

import re

_COMMAND = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")


def _braced(text: str, start: int) -> str | None:
    """Returns the content of the brace group opening at text[start], or None if unclosed."""
    depth = 0
    for i in range(start, len(text)):
        if text[i] == "{" and text[i - 1] != "\\":
            depth += 1
        elif text[i] == "}" and text[i - 1] != "\\":
            depth -= 1
            if depth == 0:
                return text[start + 1:i]
    return None


def last_boxed(text: str) -> str | None:
    """Returns the content of the last ``\\boxed``/``\\fbox`` in `text`, or None.

    Handles nested braces (``\\boxed{\\frac{1}{2}}`` gives ``\\frac{1}{2}``) and the brace-less
    form ``\\boxed 5`` (the content runs to the next ``$``, newline or end, minus a final period).
    An unclosed ``\\boxed{`` (a cut-off answer) counts as no answer.
    """
    matches = list(_COMMAND.finditer(text))
    if not matches:
        return None
    end = matches[-1].end()
    rest = text[end:]
    stripped = rest.lstrip()
    if stripped.startswith("{"):
        return _braced(text, end + len(rest) - len(stripped))
    if rest[:1].isspace():
        content = re.split(r"[$\n]", stripped, maxsplit=1)[0].strip().rstrip(".")
        return content or None
    return None


def strip_text(content: str) -> str:
    """Returns `content` without a wrapping ``\\text{...}`` (or ``\\mathrm``, ``\\textbf``...)."""
    m = re.fullmatch(r"\s*\\(?:text|textbf|mathrm|mathbf|mbox)\s*\{(.*)\}\s*", content, re.S)
    return m.group(1) if m else content
