"""Batches of token-id rows for the HF backend: padding to one width, and the prefix all rows
share (a system prompt, a chat header) that can run once for the whole batch."""
from __future__ import annotations

from typing import Sequence

import torch


def pad_batch(rows: Sequence[Sequence[int]], pad_id: int, *, left: bool,
              width: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns (ids, mask): the rows padded with `pad_id` to `width` columns (default: the
    longest row's length), on the left (every row ends at the last column, where generation
    goes on) or on the right (every row starts at column 0), and a 1/0 mask of the real tokens.
    Both are long tensors on the CPU."""
    width = max(map(len, rows)) if width is None else width
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        cols = slice(width - len(row), width) if left else slice(0, len(row))
        ids[i, cols] = torch.tensor(list(row), dtype=torch.long)
        mask[i, cols] = 1
    return ids, mask


def shared_prefix(rows: Sequence[Sequence[int]], minimum: int = 1) -> int:
    """Returns how many leading tokens all rows share, short of the shortest row's last token
    (each row keeps at least one token of its own, whose logits come from its own pass); 0 when
    that is fewer than `minimum` (not worth a pass of its own), for fewer than two rows, and
    when `minimum` is 0 (off)."""
    if not minimum or len(rows) < 2:
        return 0
    limit = max(min(map(len, rows)) - 1, 0)
    first = rows[0]
    shared = next((i for i in range(limit) if any(r[i] != first[i] for r in rows)), limit)
    return shared if shared >= minimum else 0
