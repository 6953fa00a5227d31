"""Fingerprints of base weights: cheap to compute at any scale, different for different weights.

A fingerprint hashes, for each tensor in name order, its name, shape, dtype, the float64 sum and
sum of squares of its values, and 256 values sampled at fixed strides. Fine-tuning, a different
quantization, or a different checkpoint changes the sums; hashing every byte of an 8B model would
take ~10 s per call for no practical gain. It reads each tensor once, on its own device.
"""
from __future__ import annotations

import hashlib
from typing import Iterable, Mapping

import torch

SAMPLES_PER_TENSOR = 256


def tensor_digest(t: torch.Tensor) -> bytes:
    """Returns a 16-byte digest of one tensor's shape, dtype, moments and strided samples."""
    flat = t.detach().reshape(-1)
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{tuple(t.shape)}|{t.dtype}".encode())
    moments = torch.stack([flat.double().sum(), flat.double().square().sum()]).cpu()
    # Round the moments: the same weights summed on another device may differ in the last bits.
    h.update(b"".join(f"{v:.9e}".encode() for v in moments.tolist()))
    idx = torch.linspace(0, flat.numel() - 1, min(SAMPLES_PER_TENSOR, flat.numel()), device=flat.device)
    # float32 positions round past the end for tensors over 2**24 entries: clamp to the last one.
    h.update(flat[idx.long().clamp_(max=flat.numel() - 1)].float().cpu().numpy().tobytes())
    return h.digest()


def combine(digests: Mapping[str, bytes]) -> str:
    """Returns the hex fingerprint of per-tensor digests (order-independent: names are sorted)."""
    h = hashlib.blake2b(digest_size=12)
    for name in sorted(digests):
        h.update(name.encode())
        h.update(digests[name])
    return h.hexdigest()


def fingerprint(named_tensors: Iterable[tuple[str, torch.Tensor]]) -> str:
    """Returns a hex fingerprint of named tensors (order-independent: names are sorted)."""
    return combine({name: tensor_digest(t) for name, t in named_tensors})
