"""The "base" strategy: no adaptation; every prompt is answered by the base model (the reference row)."""
from __future__ import annotations

from typing import Sequence

from t2lib.core.experts import Expert
from t2lib.methods.strategies.core import Strategy


class NoAdaptation(Strategy):
    name = "base"

    def dispatch(self, questions: Sequence[str]) -> list[str]:
        return ["base"] * len(questions)

    def expert_for(self, label: str) -> Expert | None:
        return None
