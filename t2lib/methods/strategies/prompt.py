"""The "prompt" strategy: the base model classifies each prompt with the paper's classification
prompt (`t2lib.methods.dispatch.PromptDispatcher`); "other" is answered with the base weights (the official
code reuses whichever expert was loaded last)."""
from __future__ import annotations

from typing import Sequence

from t2lib.methods.dispatch import PromptDispatcher
from t2lib.core.experts import Expert
from t2lib.methods.strategies.core import Strategy


class PromptStrategy(Strategy):
    name = "prompt"
    dispatches_by_category = True

    def classifier(self) -> tuple[Expert | None, str]:
        """Returns (the weights that read the classification prompt, how its answer is read)."""
        return None, self.context.dispatch_mode

    def dispatch(self, questions: Sequence[str]) -> list[str]:
        weights, mode = self.classifier()
        with self.context.svf.using(weights):
            return PromptDispatcher(self.context.backend, mode=mode).classify(list(questions))
