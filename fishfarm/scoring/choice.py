"""Scores multiple-choice answers (ARC-style): reads the chosen option's label or its text.

Where the choice is read from, in order: ``\\boxed{B}``; the last "answer is (B)" / "Answer: B"
/ "option B" phrase; a label opening the answer ("(B) ...", "B. ...", "B) ...") or making up
the whole answer; the last parenthesized label "(B)"; and finally the text of exactly one option
appearing in the answer (case and punctuation ignored). A lone "A" used as an article
("A dog ...") is never read as option A. Several options' texts and no label means no answer.
"""
from __future__ import annotations

import re
import string
from typing import Sequence

from fishfarm.scoring.boxed import last_boxed, strip_text
from fishfarm.types import Score


def _label_re(labels: Sequence[str]) -> str:
    return "|".join(re.escape(l) for l in sorted(labels, key=len, reverse=True))


def _normalize(text: str) -> str:
    text = text.lower().translate(str.maketrans("", "", string.punctuation))
    return " ".join(text.split())


def _read_label(text: str, labels: Sequence[str]) -> str | None:
    """Returns the label `text` consists of ("B", "(B)", "B.", "Option B"), or None."""
    m = re.fullmatch(rf"\s*(?:option|choice)?\s*[(\[]?\s*({_label_re(labels)})\s*[)\]]?[.:]?\s*",
                     text, re.IGNORECASE if all(l.isdigit() for l in labels) else 0)
    return m.group(1) if m else None


def extract_choice(answer: str, labels: Sequence[str], *,
                   options: Sequence[str] | None = None) -> str | None:
    """Returns the label of the option the answer picks, or None.

    Args:
        answer: the model's answer text.
        labels: the option labels, e.g. "ABCD" or ["1", "2", "3", "4"].
        options: the options' texts, same order, to recognize answers that quote an option.
    """
    labels = list(labels)
    lab = _label_re(labels)
    boxed = last_boxed(answer)
    if boxed is not None:
        found = _read_label(strip_text(boxed), labels)
        if found is None and options:
            found = _match_option_text(strip_text(boxed), labels, options)
        if found is not None:
            return found
    phrase = re.compile(
        rf"(?:answer|option|choice)(?:\s+is)?\s*(?:[:：]|is)?\s*(?:option\s+|choice\s+)?"
        rf"(?:\*\*)?[(\[]?({lab})(?![A-Za-z0-9])", re.IGNORECASE)
    hits = [m for m in phrase.finditer(answer) if m.group(1) in labels]
    if hits:
        return hits[-1].group(1)
    head = re.match(rf"\s*(?:\*\*)?(?:[(\[]({lab})[)\]]|({lab})[.):](?!\d))", answer)
    if head:
        return head.group(1) or head.group(2)
    whole = _read_label(answer, labels)
    if whole is not None:
        return whole
    parens = re.findall(rf"\(({lab})\)", answer)
    if parens:
        return parens[-1]
    return _match_option_text(answer, labels, options) if options else None


def _match_option_text(answer: str, labels: Sequence[str], options: Sequence[str]) -> str | None:
    norm = _normalize(answer)
    texts = [_normalize(o) for o in options]
    exact = [l for l, t in zip(labels, texts) if t and t == norm]
    if exact:
        return exact[0]
    found = [l for l, t in zip(labels, texts) if t and re.search(rf"\b{re.escape(t)}\b", norm)]
    if len(found) > 1:  # prefer an option not contained in another found option's text
        found = [l for l in found if not any(
            texts[labels.index(l)] != texts[labels.index(o)]
            and texts[labels.index(l)] in texts[labels.index(o)] for o in found)]
    return found[0] if len(found) == 1 else None


def score_choice(answer: str, gold: str | int, *, labels: Sequence[str] = "ABCD",
                 options: Sequence[str] | None = None) -> Score:
    """Returns whether the answer picks the gold option.

    Args:
        answer: the model's answer text.
        gold: the gold label ("B") or its 0-based index in `labels`.
        labels: the option labels, in order.
        options: the options' texts, in order (lets "evaporation" count as the option's letter).
    """
    labels = list(labels)
    target = labels[gold] if isinstance(gold, int) else gold
    if target not in labels:
        raise ValueError(f"gold label {gold!r} is not one of the labels {labels}")
    picked = extract_choice(answer, labels, options=options)
    if picked is None:
        return Score(False, None, "no option found in the answer")
    return Score(picked == target, picked, "" if picked == target else f"expected {target}")


def score_category(answer: str, category: str) -> Score:
    """Returns whether the last \\boxed{} of a classification answer names `category`."""
    boxed = last_boxed(answer)
    if boxed is None:
        return Score(False, None, "no \\boxed{} category in the answer")
    picked = boxed.strip().strip("'\"").lower()
    return Score(picked == category, picked, "" if picked == category else f"expected {category}")


def score_name(answer: str, gold: str, names: Sequence[str]) -> Score:
    """Returns whether the first of `names` that the answer mentions is `gold`.

    For "who" or "where" questions: "The key is in the garden, not the park." picks garden.
    Names are matched as whole words, case ignored; an answer that names none picks nothing.
    """
    if gold not in names:
        raise ValueError(f"gold name {gold!r} is not one of the names {list(names)}")
    hits = [(m.start(), n) for n in names for m in [re.search(rf"\b{re.escape(n)}\b", answer, re.IGNORECASE)] if m]
    if not hits:
        return Score(False, None, "none of the names is in the answer")
    picked = min(hits)[1]
    return Score(picked == gold, picked, "" if picked == gold else f"expected {gold}")
