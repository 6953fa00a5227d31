"""The "base" strategy: no adaptation; every prompt is answered by the base model (the reference row)."""
from __future__ import annotations

from typing import Sequence

from t2lib.experts import Expert
from t2lib.strategies.core import Strategy


class NoAdaptation(Strategy):
    name = "base"

    def route(self, questions: Sequence[str]) -> list[str]:
        return ["base"] * len(questions)

    def weights(self, label: str) -> Expert | None:
        return None
