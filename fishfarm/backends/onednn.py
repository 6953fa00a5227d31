"""oneDNN's fused linear kernel on the CPU (`torch.ops.mkldnn._linear_pointwise`, the kernel
torch's compiler uses on CPUs), for the lean decoding loop's fp32 products.

It runs the small-batch products of decoding faster than torch's default fp32 product and
accumulates its sums in another order, so logits differ from the default product's in the last
bits (about 1e-4). `Packed` copies linear layers' weights into the kernel's blocked layout, fused
when they share an input.
"""
from __future__ import annotations

from typing import Sequence

import torch


def onednn_available() -> bool:
    """True where torch has oneDNN's fused linear kernel for the CPU."""
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """x @ weight.T + bias through oneDNN's kernel (weight dense, or in its blocked layout)."""
    out = torch.ops.mkldnn._linear_pointwise(x.reshape(-1, x.shape[-1]), weight, bias, "none", [], "")
    return out.view(*x.shape[:-1], out.shape[-1])


class Packed:
    """Linear layers sharing an input, their weights (concatenated) copied into oneDNN's blocked
    layout, tuned for `rows` rows: calling it on x returns each layer's output, as views of one
    product. `order`, when given, reorders the output features of the concatenation. The copy
    holds as much memory as the weights it copies, and is made from their values at the time."""

    def __init__(self, modules: Sequence[torch.nn.Linear], rows: int, order: torch.Tensor | None = None):
        with torch.no_grad():
            weight = torch.cat([m.weight for m in modules]) if len(modules) > 1 else modules[0].weight
            biases = [m.bias for m in modules]
            bias = None if all(b is None for b in biases) else torch.cat(
                [b.detach() if b is not None else m.weight.new_zeros(m.out_features) for b, m in zip(biases, modules)])
            if order is not None:
                weight, bias = weight[order], (bias[order] if bias is not None else None)
            self.weight = torch.ops.mkldnn._reorder_linear_weight(weight.detach(), rows)
            self.bias = bias
        self.sizes = [m.out_features for m in modules]

    def product(self, x: torch.Tensor) -> torch.Tensor:
        """The concatenated outputs, as one tensor."""
        return linear(x, self.weight, self.bias)

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.product(x)
        return out.split(self.sizes, dim=-1) if len(self.sizes) > 1 else (out,)
