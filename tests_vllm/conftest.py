"""Shared helpers of the vLLM tests (run by `make test-vllm` in .venv-vllm)."""
from __future__ import annotations

import pytest
import torch

from t2lib.core.experts import Expert


@pytest.fixture(scope="session")
def low_rank_expert():
    """Returns `make(svf, name, seed, rank=8)`: an expert whose change to every matrix has rank
    `rank` exactly (the `rank` largest singular values scaled by 1 ± 0.5, strong enough to change
    answers; every other one left at 1), so a LoRA adapter of that rank is its change exactly."""
    def make(svf, name: str, seed: int, rank: int = 8) -> Expert:
        gen = torch.Generator().manual_seed(seed)
        z = {n: torch.ones(f.S.numel()) for n, f in svf.decomp.items()}
        for v in z.values():
            v[:rank] += 0.5 * torch.randn(rank, generator=gen)
        return Expert(z, svf.model_id, svf.base_fingerprint, name=name)

    return make
