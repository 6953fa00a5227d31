"""The lean decoding loop's key-value cache: allocated once per batch, written in place."""
from __future__ import annotations

from typing import Sequence

import torch


class KVCache:
    """Every layer's keys and values for a batch of rows, up to `columns` positions each: one
    (layers, rows, kv heads, columns, head dim) tensor for keys and one for values, allocated
    once and written in place (no per-step concatenation).

    A forward pass writes the same columns in every layer (`write`), then attends to all the
    columns written so far (`view`); `keep` drops rows that have ended, in place.
    """

    def __init__(self, *, layers: int, rows: int, kv_heads: int, columns: int, head_dim: int,
                 dtype: torch.dtype, device: torch.device | str):
        shape = (layers, rows, kv_heads, columns, head_dim)
        self.keys = torch.empty(shape, dtype=dtype, device=device)
        self.values = torch.empty(shape, dtype=dtype, device=device)
        self.length = 0  # columns written so far (the last write's end)

    @property
    def rows(self) -> int:
        return self.keys.shape[1]

    def write(self, layer: int, k: torch.Tensor, v: torch.Tensor, start: int) -> None:
        """Writes `layer`'s keys and values (rows x kv heads x t x head dim; one row is written
        to every row) at columns start..start+t-1."""
        end = start + k.shape[2]
        self.keys[layer, :, :, start:end] = k
        self.values[layer, :, :, start:end] = v
        self.length = end

    def view(self, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns `layer`'s keys and values in the columns written so far (views, no copy)."""
        return self.keys[layer, :, :, :self.length], self.values[layer, :, :, :self.length]

    def write_prefix(self, prefix: KVCache) -> None:
        """Writes a one-row cache's columns (a prefix every row shares, run once) into every row,
        at the same columns."""
        end = prefix.length
        self.keys[:, :, :, :end] = prefix.keys[:, :, :, :end]
        self.values[:, :, :, :end] = prefix.values[:, :, :, :end]
        self.length = end

    def keep(self, rows: Sequence[int]) -> None:
        """Keeps only `rows` (ascending row indices), in this order: each one's written columns
        move down to its new place in the same buffer, and the cache becomes the first
        len(rows) rows. A row only moves to a place at or before its own, so no row is
        overwritten before it moves, and nothing is allocated (a gather would copy every kept row
        into a new cache)."""
        used = self.length
        for new, old in enumerate(rows):
            if new != old:
                self.keys[:, new, :, :used] = self.keys[:, old, :, :used]
                self.values[:, new, :, :used] = self.values[:, old, :, :used]
        self.keys, self.values = self.keys[:, :len(rows)], self.values[:, :len(rows)]
