"""What a suite is: its categories, the task each expert trains on, the unseen task of each
category, its classification task, and how to build any of its tasks on a split."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

from fishfarm.task import Task


@dataclass(frozen=True)
class Suite:
    """A family of tasks the kit trains experts on and adapts to (one per preset).

    Args:
        name: the registry key ("tiny", "paper").
        categories: the expert categories, in table order ("math", "code", "reasoning").
        training: category -> the task its expert is trained on (paper Table 1).
        unseen: category -> the task adaptation is tested on (paper Table 2); never trained on.
        classification: the dispatch task the classification expert trains on (None: the suite
            has none).
        build: (task name, split, max_new_tokens or None, **options) -> `Task`; None keeps the
            task's own answer budget; options are the suite's own task settings (paper:
            `arc_cot_prefix`), which other suites ignore.
        paper_scale: the suite's tasks take a preset's `paper_max_new_tokens` and
            `paper_eval_limit` (the first n samples); the others take `eval_limit` (n samples
            spread over the split) and keep their own budgets.
        source: a suite read from a file (`fishfarm.suites.from_file`): the file, its sha256, each
            task's data files and their sha256, and how each task was split; None: a registered suite.
    """

    name: str
    categories: tuple[str, ...]
    training: Mapping[str, str]
    unseen: Mapping[str, str]
    classification: str | None
    build: Callable[..., Task]
    paper_scale: bool = False
    source: Mapping | None = None

    @property
    def tasks(self) -> tuple[str, ...]:
        """Returns every task name: training tasks, unseen tasks, then the classification task."""
        extra = (self.classification,) if self.classification else ()
        return (*self.training.values(), *self.unseen.values(), *extra)

    def category(self, task: str) -> str:
        """Returns the category of a training or unseen task ("dispatch" for classification)."""
        for mapping in (self.training, self.unseen):
            for category, name in mapping.items():
                if name == task:
                    return category
        if task == self.classification:
            return "dispatch"
        raise self._unknown(task)

    def role(self, task: str) -> str:
        """Returns "train", "unseen" or "dispatch"."""
        if task in self.training.values():
            return "train"
        if task in self.unseen.values():
            return "unseen"
        if task == self.classification:
            return "dispatch"
        raise self._unknown(task)

    def expert_name(self, task: str) -> str:
        """Returns the name of the expert trained on `task`: its category, or "classification"."""
        if task == self.classification:
            return "classification"
        if task not in self.training.values():
            raise ValueError(f"no expert is trained on {task!r} in the {self.name} suite; its training tasks "
                             f"are {', '.join(self.trainable)}")
        return self.category(task)

    @property
    def trainable(self) -> tuple[str, ...]:
        """Returns the tasks an expert is trained on (training tasks, then classification)."""
        extra = (self.classification,) if self.classification else ()
        return (*self.training.values(), *extra)

    def task(self, name: str, split: str = "test", *, max_new_tokens: int | None = None, **options) -> Task:
        """Returns task `name` on `split` (None budget: the task's own), with the suite's task options."""
        if name not in self.tasks:
            raise self._unknown(name)
        return self.build(name, split, max_new_tokens, **options)

    def _unknown(self, task: str) -> ValueError:
        return ValueError(f"unknown task {task!r} in the {self.name} suite; choose one of {', '.join(self.tasks)}")
