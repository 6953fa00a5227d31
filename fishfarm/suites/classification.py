"""The dispatch task of a suite: which category does a prompt belong to?

Every suite builds it the same way, from its training tasks' train-split prompts only (the official
code drew it from test questions of the evaluation tasks): each category's prompts are shuffled with a
fixed seed and cut into test, validation and train, so the splits are disjoint and no unseen task
and no test question leaks in. The prompt is the paper's boxed classification prompt
(`fishfarm.data.prompts.cls_prompt`), the answer primed up to "\\boxed{".
"""
from __future__ import annotations

import random
from typing import Mapping, Sequence

from fishfarm.data.prompts import CLS_RESPONSE_PREFIX, cls_prompt
from fishfarm.scoring import score_category
from fishfarm.task import Task
from fishfarm.types import SamplingParams

SPLITS = ("train", "validation", "test")


def classification_task(prompts: Mapping[str, Sequence[tuple[str, str]]], split: str, *, seed: str,
                        test: int = 40, validation: int = 16, max_new_tokens: int = 8) -> Task:
    """Returns the classification task on `split`.

    Args:
        prompts: category -> (sample id, question text) of its training task's train split.
        split: "train" | "validation" | "test".
        seed: the shuffle's seed (a string; each category's shuffle adds its name).
        test / validation: questions per category in those splits; train gets the rest.
        max_new_tokens: answer budget (a category word and "}" follow the primed "\\boxed{").
    Records: {"id": "cls-<sample id>", "question", "category"}.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose train, validation or test")
    records = []
    for category, items in prompts.items():
        items = list(items)
        if len(items) <= test + validation:
            raise ValueError(f"the {category} training task has {len(items)} train prompts; the classification "
                             f"task needs more than {test + validation} ({test} test, {validation} validation)")
        random.Random(f"{seed}:cls:{category}").shuffle(items)
        cut = {"test": items[:test], "validation": items[test:test + validation], "train": items[test + validation:]}
        records += [{"id": f"cls-{sid}", "question": text, "category": category} for sid, text in cut[split]]
    return Task("classification", records, id_field="id", prompt=lambda r: cls_prompt(r["question"]),
                scorer=lambda a, r: score_category(CLS_RESPONSE_PREFIX + a, r["category"]),
                sampling=SamplingParams(max_new_tokens=max_new_tokens))
