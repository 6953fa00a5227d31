"""Which samples a run uses: evaluation subsets, few-shot shots, training batches.

Each is a pure function of its arguments (seeded), so a rerun or a resumed run uses the same samples.
"""
from __future__ import annotations

import random
from typing import Sequence


def spread_ids(ids: Sequence[str], limit: int | None) -> list[str]:
    """Returns `limit` ids spread evenly over `ids` (all of them when limit is None)."""
    ids = list(ids)
    if not limit or limit >= len(ids):
        return ids
    return ids[:: len(ids) // limit][:limit]


def draw_shots(ids: Sequence[str], k: int, *, seed: int) -> tuple[list[str], list[str]]:
    """Returns (k shot ids, the remaining ids), drawn with a seeded shuffle."""
    ids = list(ids)
    if k >= len(ids):
        raise ValueError(f"cannot draw {k} shots from {len(ids)} samples and keep some to score on")
    order = ids[:]
    random.Random(f"shots:{seed}").shuffle(order)
    shots = set(order[:k])
    return [i for i in ids if i in shots], [i for i in ids if i not in shots]


def batch_ids(ids: Sequence[str], step: int, batch_size: int, seed: int) -> list[str]:
    """Returns the sample ids of step `step` (1-based): epochs of seeded shuffles, cut in order.

    A pure function of its arguments, so a resumed run draws the same batches.
    """
    ids = list(ids)
    if not ids:
        raise ValueError("the training task has no samples")
    start = (step - 1) * batch_size
    out = []
    while len(out) < batch_size:
        epoch, offset = divmod(start + len(out), len(ids))
        order = ids[:]
        random.Random(f"{seed}:{epoch}").shuffle(order)
        out.extend(order[offset:offset + batch_size - len(out)])
    return out
