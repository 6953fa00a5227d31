"""Scoring a split question by question: the 1/0 lists every table and paired interval is built on."""
from __future__ import annotations

import time
from typing import ContextManager, Callable, Mapping, Sequence

from fishfarm.task import Task
from fishfarm.types import SamplingParams


def score_questions(task: Task, backend, ids: Sequence[str], *, sampling: SamplingParams | None = None,
                    progress: bool = True) -> list[int]:
    """Returns 1 or 0 for each of `ids`: whether the backend's answer (with the weights live now) is right."""
    done = task.evaluate(backend, sample_ids=list(ids), sampling=sampling, progress=progress)
    return [int(s.score.correct) for s in done.samples]


def score_weights(task: Task, backend, ids: Sequence[str], weights: Mapping[str, Callable[[], ContextManager]], *,
                  sampling: SamplingParams | None = None, progress: bool = True) -> dict[str, list[int]]:
    """Returns {label: 1/0 per question} for each label's weights, live inside the context
    `weights[label]()` makes (for example {"base": lambda: svf.using(None), "expert": ...})."""
    correct = {}
    for label, context in weights.items():
        with context():
            correct[label] = score_questions(task, backend, ids, sampling=sampling, progress=progress)
    return correct


def base_and_expert(task: Task, backend, ids: Sequence[str], using: Callable[[object], ContextManager], expert, *,
                    sampling: SamplingParams | None = None, progress: bool = True) -> dict:
    """Scores the base model and `expert` (each live inside `using(None)` / `using(expert)`) on the
    same questions; returns the test fields of a Table 1 row: n, base_accuracy, expert_accuracy,
    gain_points, test_seconds and per_question {"ids", "base", "expert"}."""
    started = time.perf_counter()
    correct = score_weights(task, backend, ids, {"base": lambda: using(None), "expert": lambda: using(expert)},
                            sampling=sampling, progress=progress)
    base, tuned = (sum(correct[k]) / len(ids) for k in ("base", "expert"))
    return {"n": len(ids), "base_accuracy": round(base, 4), "expert_accuracy": round(tuned, 4),
            "gain_points": round(100 * (tuned - base), 1), "test_seconds": round(time.perf_counter() - started, 1),
            "per_question": {"ids": list(ids), **correct}}


def official_accuracy(samples) -> dict:
    """Returns {"accuracy_official": ...} where the task scored `samples` the official way too, else {}."""
    verdicts = [s.official for s in samples if s.official is not None]
    return {"accuracy_official": round(sum(verdicts) / len(verdicts), 4)} if verdicts and len(verdicts) == len(samples) else {}
