"""Deterministic, disjoint splits carved from the records that exist.

Every carve shuffles record positions with ``random.Random(seed)`` (Python's Mersenne Twister,
stable across versions and machines), hands out the first positions to the requested splits in
order and keeps each split's records in their original order. With seed 16, the official code's
seed, `carve` reproduces the official MBPP+ train/validation split exactly.
"""
from __future__ import annotations

import random
from typing import Mapping, Sequence, TypeVar

T = TypeVar("T")

CARVE_SEED = 16  # the seed of the official code's MBPP split and few-shot draws


class SplitUnavailableError(ValueError):
    """Raised when a split cannot be made without taking records from the test split."""


def carve(records: Sequence[T], sizes: Mapping[str, int], *, seed: int = CARVE_SEED,
          rest: str | None = "test") -> dict[str, list[T]]:
    """Returns disjoint splits of `records`, chosen at random with a fixed seed.

    Args:
        records: what to split.
        sizes: records per split, handed out in this order: {"train": 400, "validation": 200}.
        seed: shuffling seed; the same seed and records give the same splits.
        rest: name of the split that gets the remaining records; None drops them.

    Raises:
        ValueError: `sizes` ask for more records than there are.
    """
    total = sum(sizes.values())
    if total > len(records) or min(sizes.values(), default=0) < 0:
        raise ValueError(f"cannot carve {dict(sizes)} out of {len(records)} records")
    order = list(range(len(records)))
    random.Random(seed).shuffle(order)
    out: dict[str, list[T]] = {}
    start = 0
    for name, n in sizes.items():
        out[name] = [records[i] for i in sorted(order[start:start + n])]
        start += n
    if rest is not None:
        out[rest] = [records[i] for i in sorted(order[start:])]
    return out


def holdout_shots(records: Sequence[T], shots: int = 10, *, seed: int = CARVE_SEED
                  ) -> tuple[list[T], list[T]]:
    """Returns (shots, remaining records): the official few-shot protocol on an unseen task.

    The official code (``FewShotTask``) shuffles the test split with seed 16,
    adapts on the first `shots` problems and scores the rest; the paper's few-shot rows follow
    it ("test split minus the 10 adaptation shots").
    """
    split = carve(records, {"shots": shots}, seed=seed, rest="remaining")
    return split["shots"], split["remaining"]
