"""The official code's MATH answer check (``is_equiv`` in SakanaAI's fishfarm), for comparison.

The paper's MATH numbers were scored this way; `score_math(..., mode="official")` uses it. Its
steps, with the reference first and the model's answer second:
1. both are stripped: newlines and ``\\!`` removed; every ``\\\\`` becomes ``\\`` (a matrix row
   separator loses a backslash); ``tfrac``/``dfrac`` -> ``frac``; ``\\left``, ``\\right``,
   ``^\\circ``, ``\\$`` and ``\\%`` removed; everything from a ``\\text{ `` on is dropped as a unit
   (two of them are an error: step 4); " ." and "{." get a 0; "x=3" keeps its right side when
   the left side has at most 2 characters; ``\\sqrt3`` -> ``\\sqrt{3}``; spaces removed;
   ``\\frac12`` -> ``\\frac{1}{2}``; "0.5" -> ``\\frac{1}{2}``; "3/4" -> ``\\frac{3}{4}``.
2. the stripped forms are compared: two numbers (commas ignored) are equal within 1e-4
   relative, also when one is the other ×100 or /100; else equal once braces and parentheses
   are removed; else tuples/intervals with the same brackets element by element; else SymPy:
   ``simplify(a - b) == 0`` or values within 1e-3.
3. or the stripped strings are equal.
4. where stripping fails, steps 2-3 run on the raw strings.

Where the kit differs, for safety: the official code hands any answer to SymPy's ``parse_expr``,
which calls ``eval``; here only digits, operators, parentheses and names that SymPy turns into
symbols (plus sqrt, sin, cos, tan, log, ln, exp, pi, E, I, oo) reach it, and ``**`` is refused. The
official code first tries SymPy's LaTeX parser, which needs the ANTLR runtime 4.11 that its
requirements do not install (nor do the kit's: math-verify brings 4.13), so that parser raises
and ``parse_expr`` decides; the kit calls ``parse_expr`` directly. Where the official code
crashes (an answer ending in ``\\sqrt`` or ``\\frac``), the kit falls back to step 4.
"""
from __future__ import annotations

import math
import re

_SAFE_EXPR = re.compile(r"[0-9a-zA-Z+\-*/^()., ]{1,200}")
_SAFE_NAMES = {"sqrt", "sin", "cos", "tan", "log", "ln", "exp", "pi", "E", "I", "oo"}
_PREFIX = "The answer is: "


def extract_answer_official(text: str) -> str | None:
    """Returns the answer as the official code reads it: the text after the last
    "The answer is: " up to ".\\n", else the content of the last ``\\boxed{...}``, else None."""
    if _PREFIX in text:
        answer = text.split(_PREFIX)[-1].split(".\n")[0].strip()
        return answer[:-1].strip() if answer.endswith(".") else answer
    start = text.rfind("\\boxed")
    if start < 0:
        return None  # a \fbox is found but never unwrapped by the official code
    depth = 0
    for i in range(start, len(text)):
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        if text[i] == "}" and depth == 0:
            boxed = text[start:i + 1]
            return boxed[len("\\boxed{"):-1] if boxed.startswith("\\boxed{") else None
    return None


def _fix_sqrt(s: str) -> str:
    head, *parts = s.split("\\sqrt")
    return head + "".join("\\sqrt" + (p if p[0] == "{" else "{" + p[0] + "}" + p[1:])
                          for p in parts)


def _fix_fracs(s: str) -> str:
    head, *parts = s.split("\\frac")
    out = head
    for p in parts:
        if p[0] == "{":
            out += "\\frac" + p
        elif len(p) < 2:
            return s
        elif p[1] != "{":
            out += "\\frac{" + p[0] + "}{" + p[1] + "}" + p[2:]
        else:
            out += "\\frac{" + p[0] + "}" + p[1:]
    return out


def _fix_slash(s: str) -> str:
    parts = s.split("/")
    if len(parts) == 2 and re.fullmatch(r"-?\d+", parts[0]) and re.fullmatch(r"-?\d+", parts[1]):
        if s == f"{int(parts[0])}/{int(parts[1])}":
            return "\\frac{" + parts[0] + "}{" + parts[1] + "}"
    return s


def strip_official(s: str) -> str:
    """Returns `s` stripped as the official code does (step 1 of the module docstring).

    Raises:
        ValueError: two ``\\text{ `` units, or an answer ending in ``\\sqrt``/``\\frac``.
    """
    s = s.replace("\n", "").replace("\\!", "").replace("\\\\", "\\")
    s = s.replace("tfrac", "frac").replace("dfrac", "frac")
    s = s.replace("\\left", "").replace("\\right", "")
    s = s.replace("^{\\circ}", "").replace("^\\circ", "").replace("\\$", "")
    if "\\text{ " in s:
        parts = s.split("\\text{ ")
        if len(parts) != 2:
            raise ValueError("more than one \\text{ unit")
        s = parts[0]
    s = s.replace("\\\\%", "").replace("\\%", "")
    s = s.replace(" .", " 0.").replace("{.", "{0.")
    if not s:
        return s
    if s[0] == ".":
        s = "0" + s
    sides = s.split("=")
    if len(sides) == 2 and len(sides[0]) <= 2:
        s = sides[1]
    try:
        s = _fix_sqrt(s).replace(" ", "")
        s = _fix_fracs(s)
    except IndexError as exc:
        raise ValueError("answer ends in \\sqrt or \\frac") from exc
    return "\\frac{1}{2}" if s == "0.5" else _fix_slash(s)


def _number(s: str) -> float | None:
    try:
        return float(s.replace(",", ""))
    except ValueError:
        return None


def _sympy(s: str):
    import sympy  # on first use: 0.5 s
    from sympy.parsing.sympy_parser import parse_expr
    if not _SAFE_EXPR.fullmatch(s) or "**" in s:
        return None
    names = set(re.findall(r"[a-zA-Z]+", s))
    if any(n not in _SAFE_NAMES and hasattr(sympy, n) for n in names):
        return None  # a SymPy function such as factorial(10**9): refused, not evaluated
    try:
        return parse_expr(s)
    except Exception:  # the official code catches everything here too
        return None


def _symbolic_equal(a: str, b: str) -> bool:
    import sympy
    ea, eb = _sympy(a), _sympy(b)
    if ea is None or eb is None:
        return False
    try:
        if sympy.simplify(ea - eb) == 0:
            return True
    except Exception:
        pass
    try:
        return math.isclose(sympy.N(ea), sympy.N(eb), rel_tol=1e-3)
    except Exception:
        return False


def _equal(first: str, second: str) -> bool:
    """The official ``math_equal(first, second)`` (step 2 of the module docstring)."""
    x, y = _number(first), _number(second)
    if x is not None and y is not None:
        try:
            return any(math.isclose(t, x, rel_tol=1e-4) for t in (y / 100, y, y * 100))
        except OverflowError:
            return False
    if not first:
        return False
    first, second = first.strip(), second.strip()
    f, s = first, second
    if ((first.startswith("[") and first.endswith("]") and not second.startswith("("))
            or (first.startswith("(") and first.endswith(")") and not second.startswith("["))):
        f, s = f.strip("[]()"), s.strip("[]()")
    f, s = re.sub(r"[{}()]", "", f), re.sub(r"[{}()]", "", s)
    if f == s:
        return True
    same_brackets = any(first[:1] == o and first[-1:] == c and second[:1] == o and second[-1:] == c
                        for o, c in ("[]", "()"))
    if same_brackets:
        fp, sp = first[1:-1].split(","), second[1:-1].split(",")
        if len(fp) == len(sp) and all(_equal(p, q) for p, q in zip(fp, sp)):
            return True
    return _symbolic_equal(first, second)


def is_equiv_official(reference: str | None, answer: str | None) -> bool:
    """Returns the official ``is_equiv(reference, answer)`` verdict (see the module docstring)."""
    if reference is None or answer is None:
        return reference is None and answer is None
    try:
        a, b = strip_official(reference), strip_official(answer)
    except ValueError:
        a, b = reference, answer
    return _equal(a, b) or a == b
