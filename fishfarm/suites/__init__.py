"""Suites: which tasks the kit trains experts on and adapts to, at each scale.

    from fishfarm.suites import get_suite
    suite = get_suite("tiny")
    suite.training["math"], suite.unseen["math"]      # "add_word", "sub_word"
    task = suite.task("sub_word", "test")

A new suite is one module (or folder) here that defines a `Suite`, plus one line in `SUITES`.
"""
from fishfarm.suites.paper import PAPER_SUITE
from fishfarm.suites.spec import Suite
from fishfarm.suites.tiny import TINY_SUITE

SUITES: dict[str, Suite] = {s.name: s for s in (TINY_SUITE, PAPER_SUITE)}


def get_suite(name: str) -> Suite:
    """Returns the registered suite `name`."""
    if name not in SUITES:
        raise ValueError(f"unknown suite {name!r}; choose one of {', '.join(SUITES)}")
    return SUITES[name]


__all__ = ["SUITES", "Suite", "get_suite"]
