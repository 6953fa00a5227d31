"""What the machine computes natively, and the autocast dtype that follows from it."""
from __future__ import annotations

from pathlib import Path

import torch

CPUINFO = Path("/proc/cpuinfo")


def native_bf16(device: torch.device | str) -> bool:
    """Returns whether `device` multiplies bf16 matrices natively.

    CUDA: `torch.cuda.is_bf16_supported()`. CPU: the AVX512-BF16 or AMX-BF16 instructions, read
    from /proc/cpuinfo (elsewhere: False). Without them a CPU emulates bf16, slower than fp32.
    """
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    try:
        flags = CPUINFO.read_text()
    except OSError:
        return False
    return any(f" {flag}" in flags for flag in ("avx512_bf16", "amx_bf16"))


def resolve_grad_dtype(grad_dtype: str | None, device: torch.device | str) -> str | None:
    """Returns the autocast dtype `ReinforceConfig.grad_dtype` asks for on `device` (None: none)."""
    if grad_dtype == "auto":
        return "bfloat16" if native_bf16(device) else None
    return grad_dtype
