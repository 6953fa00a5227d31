"""The adaptation-strategy interface (pass 1 of Transformer², paper §3.2).

A strategy adapts in two moves: `prepare` sees the task as a whole before any prompt is
answered (few-shot searches α on its shots there; the others need nothing), then `dispatch` gives
each prompt a label and `expert_for` says which expert answers a label (None: the base model).
`Transformer2` runs pass 2 with those weights; the Table 2 step (`t2lib.runs.adaptation`) iterates the
registry in `t2lib.methods.strategies`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Mapping, Sequence

from fishfarm.task import Task
from t2lib.methods.cem import CEMConfig
from t2lib.core.experts import Expert
from t2lib.core.svf import SVFModel


@dataclass
class AdaptationContext:
    """What every strategy may use.

    Args:
        svf: the base model wrapped for SVF (strategies apply experts through it, never by hand).
        backend: generates and scores with the live model.
        experts: category -> expert ("math", "code", "reasoning").
        cls_expert: the classification expert (the "cls-expert" strategy needs it).
        dispatch_mode: how the base model's reading of the classification prompt is taken
            ("choice" | "generate", `t2lib.methods.dispatch`).
        cls_dispatch_mode: the same for the classification expert ("generate": what it was trained for).
        cem: settings of the few-shot search.
        progress: show progress bars.
    """
    svf: SVFModel
    backend: object
    experts: Mapping[str, Expert]
    cls_expert: Expert | None = None
    dispatch_mode: str = "choice"
    cls_dispatch_mode: str = "generate"
    cem: CEMConfig = field(default_factory=CEMConfig)
    progress: bool = True


class Strategy:
    """One way of doing pass 1. Subclasses set `name` and implement `dispatch`.

    Class attributes:
        name: the registry key and the name in results ("prompt", ...).
        dispatches_by_category: labels are categories (or "other"), so results keep a dispatch
            confusion matrix per unseen task.
        uses_shots: `prepare` reads labelled shots of the task (they are then kept out of scoring).
    """

    name: ClassVar[str] = ""
    dispatches_by_category: ClassVar[bool] = False
    uses_shots: ClassVar[bool] = False

    def __init__(self, context: AdaptationContext):
        self.context = context

    def prepare(self, task: Task, shot_ids: Sequence[str]) -> object | None:
        """Adapts to `task` as a whole before its prompts are dispatched; returns what it found (or None)."""
        return None

    def dispatch(self, questions: Sequence[str]) -> list[str]:
        """Returns one label per question: which expert answers it (`expert_for`)."""
        raise NotImplementedError

    def expert_for(self, label: str) -> Expert | None:
        """Returns the expert that answers prompts labelled `label` (None: the base model)."""
        return self.context.experts.get(label)

    def summary(self) -> dict:
        """Returns what `prepare` found, as plain data for the results file (name -> value)."""
        return {}
