"""Suites: which tasks the kit trains experts on and adapts to, at each scale.

    from fishfarm.suites import get_suite
    suite = get_suite("tiny")
    suite.training["math"], suite.unseen["math"]      # "add_word", "sub_word"
    task = suite.task("sub_word", "test")

A new suite is one module (or folder) here that defines a `Suite`, plus one line in `SUITES`; or,
with no code, a suite file (`fishfarm.suites.from_file`, docs/own_tasks.md) named by its path.
"""
from fishfarm.suites.from_file import SuiteFileError, is_suite_file, load_suite_file
from fishfarm.suites.paper import PAPER_SUITE
from fishfarm.suites.spec import Suite
from fishfarm.suites.tiny import TINY_SUITE

SUITES: dict[str, Suite] = {s.name: s for s in (TINY_SUITE, PAPER_SUITE)}


def get_suite(name: str) -> Suite:
    """Returns the registered suite `name`, or the suite a file describes when `name` is a path ending
    in .yaml or .yml (`fishfarm.suites.from_file`, read and checked once per version of the file)."""
    if is_suite_file(name):
        return load_suite_file(name)
    if name not in SUITES:
        raise ValueError(f"unknown suite {name!r}; choose one of {', '.join(SUITES)}, or give the path of a suite "
                         "file (.yaml, docs/own_tasks.md)")
    return SUITES[name]


__all__ = ["SUITES", "Suite", "SuiteFileError", "get_suite", "is_suite_file"]
