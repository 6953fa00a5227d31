"""The "few-shot" strategy: CEM searches the mixing weights α on a few labelled shots of the task
(`t2lib.methods.cem`); every prompt is then answered by that mixture."""
from __future__ import annotations

from typing import Sequence

import torch

from fishfarm.task import Task
from t2lib.methods.cem import CEMResult, CEMSearch
from t2lib.core.experts import Expert
from t2lib.methods.strategies.core import Strategy


class FewShotStrategy(Strategy):
    name = "few-shot"
    uses_shots = True
    mixture: CEMResult | None = None

    def prepare(self, task: Task, shot_ids: Sequence[str]) -> CEMResult:
        """Searches α on the shots of `task` and keeps the mixture."""
        c = self.context
        search = CEMSearch(c.svf, c.backend, list(c.experts.values()), config=c.cem, progress=c.progress)
        self.mixture = search.search(task, shot_ids)
        return self.mixture

    def reuse(self, alpha: torch.Tensor, *, accuracy: float = float("nan")) -> CEMResult:
        """Takes the α an earlier search found on this task's shots (kept with its results) instead of
        searching again; returns the mixture kept."""
        c = self.context
        search = CEMSearch(c.svf, c.backend, list(c.experts.values()), config=c.cem, progress=False)
        alpha = torch.as_tensor(alpha, dtype=torch.float32)
        self.mixture = CEMResult(alpha=alpha, expert=search.mixture(alpha), accuracy=accuracy, loglik=float("nan"))
        return self.mixture

    def dispatch(self, questions: Sequence[str]) -> list[str]:
        if self.mixture is None:
            raise RuntimeError("few-shot needs prepare(task, shot_ids) (Transformer2.prepare) before answering")
        return ["mixture"] * len(questions)

    def expert_for(self, label: str) -> Expert | None:
        return self.mixture.expert if label == "mixture" else super().expert_for(label)

    def summary(self) -> dict:
        m = self.mixture
        if m is None:
            return {}
        return {"alpha": m.alpha.tolist(),
                "cem": {"accuracy": m.accuracy, "history": m.history, "evaluations": m.evaluations}}
