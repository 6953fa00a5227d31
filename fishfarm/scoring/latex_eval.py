"""Evaluates simple LaTeX math (numbers, + - * / ^, \\frac, \\sqrt, \\pi, variables) to a float.

A small recursive-descent parser, never ``eval``: answers are untrusted text. It lets the MATH
scorer see that ``\\frac{\\sqrt3}{2}`` equals ``0.8660254`` and that ``2x+1`` equals ``1+2x``
(by evaluating both at the same random points). Anything else raises `LatexEvalError`.
"""
from __future__ import annotations

import math
import re
from typing import Callable, Mapping

_MAX_EXPONENT = 64.0  # caps 10^9^9-style answers that would hang or overflow
_TOKEN = re.compile(r"\s*(?:(?P<num>\d+\.?\d*|\.\d+)|(?P<name>[a-zA-Z]+)|(?P<op>[-+*/^()]))")
_FUNCS: Mapping[str, Callable[[float], float]] = {"sqrt": math.sqrt, "ln": math.log,
                                                  "log": math.log, "sin": math.sin,
                                                  "cos": math.cos, "tan": math.tan,
                                                  "exp": math.exp}
_CONSTS = {"pi": math.pi, "infty": math.inf, "inf": math.inf}


class LatexEvalError(ValueError):
    """Raised when an expression is outside the supported subset."""


def _group(s: str, start: int) -> tuple[str, int]:
    """Returns (content, index after) of the brace group at s[start], or one bare token."""
    while start < len(s) and s[start] == " ":
        start += 1
    if start >= len(s):
        raise LatexEvalError("missing argument")
    if s[start] != "{":
        m = re.match(r"\\[a-zA-Z]+|.", s[start:])
        return m.group(0), start + len(m.group(0))
    depth = 0
    for i in range(start, len(s)):
        depth += {"{": 1, "}": -1}.get(s[i], 0)
        if depth == 0:
            return s[start + 1:i], i + 1
    raise LatexEvalError("unbalanced braces")


def to_plain(latex: str) -> str:
    """Returns `latex` rewritten with plain operators: ``\\frac{a}{b}`` -> ``((a)/(b))``."""
    s = latex.replace("\\left", "").replace("\\right", "")
    for cmd, repl in (("\\cdot", "*"), ("\\times", "*"), ("\\div", "/"), ("\\ast", "*")):
        s = s.replace(cmd, repl)
    out, i = [], 0
    while i < len(s):
        m = re.match(r"\\[dt]?frac|\\sqrt|\\[a-zA-Z]+", s[i:])
        if not m:
            out.append("(" if s[i] == "{" else ")" if s[i] == "}" else s[i])
            i += 1
            continue
        cmd, i = m.group(0), i + len(m.group(0))
        if cmd.endswith("frac"):
            num, i = _group(s, i)
            den, i = _group(s, i)
            out.append(f"(({to_plain(num)})/({to_plain(den)}))")
        elif cmd == "\\sqrt":
            root = None
            if i < len(s) and s[i] == "[":
                close = s.index("]", i)
                root, i = s[i + 1:close], close + 1
            arg, i = _group(s, i)
            out.append(f" sqrt({to_plain(arg)})" if root is None
                       else f"(({to_plain(arg)})^(1/({to_plain(root)})))")
        elif cmd[1:] in _FUNCS or cmd[1:] in _CONSTS:
            out.append(f" {cmd[1:]} ")
        else:
            raise LatexEvalError(f"unsupported command {cmd}")
    return "".join(out)


class _Parser:
    def __init__(self, text: str, variables: Mapping[str, float]):
        self.tokens: list[tuple[str, str]] = []
        pos, text = 0, text.strip()
        while pos < len(text):
            m = _TOKEN.match(text, pos)
            if not m or m.end() == pos:
                raise LatexEvalError(f"unexpected {text[pos:pos + 10]!r}")
            kind = m.lastgroup
            value = m.group(kind)
            if kind == "name" and value not in _FUNCS and value not in _CONSTS:
                self.tokens += [("name", c) for c in value]  # "xy" is x*y
            else:
                self.tokens.append((kind, value))
            pos = m.end()
        self.i, self.variables = 0, variables

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self) -> tuple[str, str]:
        tok = self.peek()
        if tok is None:
            raise LatexEvalError("unexpected end")
        self.i += 1
        return tok

    def parse(self) -> float:
        value = self.expr()
        if self.peek() is not None:
            raise LatexEvalError(f"trailing {self.peek()[1]!r}")
        return value

    def expr(self) -> float:
        value = self.term()
        while self.peek() in (("op", "+"), ("op", "-")):
            value = value + self.term() if self.take()[1] == "+" else value - self.term()
        return value

    def term(self) -> float:
        value = self.unary()
        while True:
            tok = self.peek()
            if tok in (("op", "*"), ("op", "/")):
                self.take()
                rhs = self.unary()
                value = value * rhs if tok[1] == "*" else value / rhs
            elif tok is not None and (tok[0] in ("num", "name") or tok == ("op", "(")):
                value = value * self.power()  # implicit product: 2x, 2(3), x y
            else:
                return value

    def unary(self) -> float:
        if self.peek() in (("op", "-"), ("op", "+")):
            return -self.unary() if self.take()[1] == "-" else self.unary()
        return self.power()

    def power(self) -> float:
        base = self.atom()
        if self.peek() == ("op", "^"):
            self.take()
            exponent = self.unary()
            if abs(exponent) > _MAX_EXPONENT or abs(base) > 1e12:
                raise LatexEvalError("power too large to compare")
            return base ** exponent
        return base

    def atom(self) -> float:
        kind, value = self.take()
        if kind == "num":
            return float(value)
        if kind == "op" and value == "(":
            inner = self.expr()
            if self.take() != ("op", ")"):
                raise LatexEvalError("expected )")
            return inner
        if value in _FUNCS:
            return _FUNCS[value](self.power())
        if value in _CONSTS:
            return _CONSTS[value]
        if kind == "name" and value in self.variables:
            return self.variables[value]
        raise LatexEvalError(f"unexpected {value!r}")


def variables_of(latex: str) -> set[str]:
    """Returns the single-letter variables of an expression (``\\pi``, ``\\sqrt`` excluded)."""
    plain = to_plain(latex)
    names = re.findall(r"[a-zA-Z]+", plain)
    return {c for n in names if n not in _FUNCS and n not in _CONSTS for c in n}


def evaluate(latex: str, variables: Mapping[str, float] | None = None) -> float:
    """Returns the value of a LaTeX expression, raising `LatexEvalError` outside the subset."""
    try:
        value = _Parser(to_plain(latex), variables or {}).parse()
    except (ZeroDivisionError, OverflowError, ValueError, TypeError) as exc:
        if isinstance(exc, LatexEvalError):
            raise
        raise LatexEvalError(str(exc)) from exc
    if isinstance(value, complex):
        raise LatexEvalError("complex value")
    return float(value)
