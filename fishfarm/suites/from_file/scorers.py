"""The scorers a suite file names, each a scorer of `fishfarm.scoring` with the record roles it
reads and the options it takes.

| name   | reads                                   | options                                  |
|--------|-----------------------------------------|------------------------------------------|
| number | answer (a number, or text ending in one)| -                                        |
| math   | answer (LaTeX, or a solution's \\boxed{})| mode: kit | official                     |
| choice | answer (a label or 0-based index), options | labels (default "ABCD..."): option labels |
| name   | answer, options (the names it may pick) | names: a fixed list instead of `options` |
| code   | tests (asserts), entry_point (optional) | -                                        |
| exact  | answer                                  | case_sensitive, punctuation (both false) |
"""
from __future__ import annotations

import string
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from fishfarm.scoring import score_choice, score_code, score_exact, score_math, score_name, score_number
from fishfarm.types import Score

Record = Mapping[str, Any]


@dataclass(frozen=True)
class ScorerSpec:
    """A scorer by name: the roles a record needs, its options, and (options) -> scorer."""
    needs: tuple[str, ...]
    options: frozenset[str]
    make: Callable[[Mapping[str, Any]], Callable[[str, Record], Score]]


def labels_for(record: Record, options: Mapping[str, Any]) -> list[str]:
    """Returns the option labels of a multiple-choice record: the `labels` option, else A, B, C, ..."""
    given = options.get("labels")
    return list(given) if given else list(string.ascii_uppercase[:len(record["options"])])


def _choice(options: Mapping[str, Any]):
    def score(answer: str, r: Record) -> Score:
        labels = labels_for(r, options)
        gold = r["answer"]
        gold = int(gold) if isinstance(gold, int) or (isinstance(gold, str) and gold.isdigit() and gold not in labels) else gold
        return score_choice(answer, gold, labels=labels, options=[str(o) for o in r["options"]])
    return score


def _name(options: Mapping[str, Any]):
    fixed = options.get("names")
    return lambda a, r: score_name(a, str(r["answer"]), list(fixed or r["options"]))


SCORERS: dict[str, ScorerSpec] = {
    "number": ScorerSpec(("question", "answer"), frozenset(), lambda o: lambda a, r: score_number(a, str(r["answer"]))),
    "math": ScorerSpec(("question", "answer"), frozenset({"mode"}),
                       lambda o: lambda a, r: score_math(a, str(r["answer"]), mode=o.get("mode", "kit"))),
    "choice": ScorerSpec(("question", "answer", "options"), frozenset({"labels"}), _choice),
    "name": ScorerSpec(("question", "answer", "options"), frozenset({"names"}), _name),
    "code": ScorerSpec(("question", "tests"), frozenset(),
                       lambda o: lambda a, r: score_code(a, r["tests"], entry_point=r.get("entry_point") or None)),
    "exact": ScorerSpec(("question", "answer"), frozenset({"case_sensitive", "punctuation"}),
                        lambda o: lambda a, r: score_exact(a, str(r["answer"]), **o)),
}


def needed_roles(scorer: str, options: Mapping[str, Any]) -> tuple[str, ...]:
    """Returns the record roles `scorer` reads with these options ("name" with fixed names needs no options)."""
    needs = SCORERS[scorer].needs
    return tuple(r for r in needs if not (scorer == "name" and r == "options" and options.get("names")))


def reference_text(scorer: str, options: Mapping[str, Any]) -> Callable[[Record], str]:
    """Returns record -> the answer as the model should write it (next-token training: the LoRA baseline)."""
    def reference(r: Record) -> str:
        if r.get("reference"):
            return str(r["reference"])
        if scorer == "choice":
            labels, gold = labels_for(r, options), r["answer"]
            return f"The answer is ({labels[int(gold)] if str(gold).isdigit() and str(gold) not in labels else gold})."
        if scorer == "code":
            raise ValueError("a code task's reference answer needs `fields.reference` (a solution) in the suite file")
        return str(r["answer"])
    return reference
