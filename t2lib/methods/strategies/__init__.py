"""Adaptation strategies (pass 1): one module each, and the registry below.

A new strategy is one module here with a `Strategy` subclass (`core`), plus one line in
`REGISTRY`; `Transformer2`, `make adapt` (`python -m t2lib adapt --strategies`) and the notebooks find it
by its `name`.
"""
from t2lib.methods.strategies.cls_expert import ClsExpertStrategy
from t2lib.methods.strategies.core import AdaptationContext, Strategy
from t2lib.methods.strategies.few_shot import FewShotStrategy
from t2lib.methods.strategies.no_adaptation import NoAdaptation
from t2lib.methods.strategies.prompt import PromptStrategy

REGISTRY: dict[str, type[Strategy]] = {s.name: s for s in (
    NoAdaptation, PromptStrategy, ClsExpertStrategy, FewShotStrategy,
)}
STRATEGIES = tuple(REGISTRY)


def make_strategy(name: str, context: AdaptationContext) -> Strategy:
    """Returns the registered strategy `name` over `context`."""
    if name not in REGISTRY:
        raise ValueError(f"unknown strategy {name!r}; choose one of {', '.join(STRATEGIES)}")
    return REGISTRY[name](context)


__all__ = ["REGISTRY", "STRATEGIES", "AdaptationContext", "Strategy", "make_strategy"]
