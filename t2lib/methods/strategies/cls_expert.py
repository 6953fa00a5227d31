"""The "cls-expert" strategy: the same classification prompt, read with the classification expert
applied (an SVF expert trained on the suite's classification task)."""
from __future__ import annotations

from t2lib.core.experts import Expert
from t2lib.methods.strategies.core import AdaptationContext
from t2lib.methods.strategies.prompt import PromptStrategy


class ClsExpertStrategy(PromptStrategy):
    name = "cls-expert"

    def __init__(self, context: AdaptationContext):
        if context.cls_expert is None:
            raise ValueError("the cls-expert strategy needs a classification expert: pass "
                             "cls_expert=Expert.load('experts/tiny/classification'), or train one with "
                             "`python -m t2lib train --preset tiny --task classification`")
        super().__init__(context)

    def classifier(self) -> tuple[Expert | None, str]:
        return self.context.cls_expert, self.context.cls_dispatch_mode
