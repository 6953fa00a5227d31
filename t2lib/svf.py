"""Singular Value Fine-tuning on a live model: apply, switch and remove experts exactly.

`SVFModel` wraps a base model and its `Decomposition`. Applying an expert writes
W' = U diag(σ ⊙ scale) Vᵀ into each target matrix (one matrix product per target); the base
weights are kept aside, so `restore()` puts back the exact original tensors, bit for bit.
For training, `write_z` puts W'(z) into the live matrices and `backward_to_z` turns the gradient
those matrices collected into z's gradient; `composed_weights` builds W' with an autograd graph to
z and `forward` runs the model with those weights substituted (torch.func.functional_call),
leaving the live weights untouched (simple, and the reference the tests compare against).
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Mapping

import torch
from torch.func import functional_call

from t2lib.experts import Expert, effective_scale
from t2lib.fingerprint import fingerprint
from t2lib.svd import Decomposition, compute_dtype


class SVFModel:
    """A base model whose target matrices can be swapped for an expert's and back.

    Args:
        model: the base model, with its base weights loaded.
        decomp: the SVD of its target matrices (from `t2lib.svd.decompose`).
        model_id: a name used in error messages and expert metadata.
        base_variant: see `ResolvedModel.variant`.
        base_device: where to keep the copy of the base target matrices; default: beside them.
            On a GPU short of memory, "cpu" halves the cost at the price of slower restores.
    """

    def __init__(self, model: torch.nn.Module, decomp: Decomposition, *, model_id: str = "model",
                 base_variant: str = "", base_device: str | torch.device | None = None):
        params = dict(model.named_parameters())
        missing = [n for n in decomp if n not in params]
        if missing:
            raise ValueError(f"the decomposition has targets {missing[:2]} that {model_id} lacks: "
                             "decompose this model instead")
        current = fingerprint((n, params[n]) for n in decomp)
        if current != decomp.base_fingerprint:
            raise ValueError(f"{model_id}'s target matrices are not the ones that were decomposed "
                             "(an expert is applied, or another model): wrap the base model")
        self.model = model
        self.decomp = decomp
        self.model_id = model_id
        self.base_variant = base_variant
        self.params = {n: params[n] for n in decomp}
        self._base = {n: p.detach().to(base_device or p.device, copy=True) for n, p in self.params.items()}
        self.active: Expert | None = None

    @property
    def base_fingerprint(self) -> str:
        return self.decomp.base_fingerprint

    @property
    def base_weights(self) -> Mapping[str, torch.Tensor]:
        """Returns target name -> the exact base matrix (read-only by convention)."""
        return self._base

    def fingerprint_matches_base(self) -> bool:
        """Returns True when the live target matrices are exactly the base model's."""
        return fingerprint((n, p) for n, p in self.params.items()) == self.base_fingerprint

    def new_expert(self, *, parameterization: str = "direct", name: str = "expert", noise_std: float = 0.0,
                   seed: int = 0) -> Expert:
        """Returns an expert for this model that starts at the base weights."""
        return Expert.identity(self.decomp, base_model=self.model_id, parameterization=parameterization,
                               name=name, base_variant=self.base_variant, noise_std=noise_std, seed=seed)

    @torch.no_grad()
    def apply(self, expert: Expert | None) -> None:
        """Replaces the target matrices by the expert's (None: the base weights).

        Targets the expert does not cover get their base weights back.
        """
        if expert is None:
            return self.restore()
        expert.check_compatible(self.decomp, model_id=self.model_id)
        scales = expert.scales(self.decomp)
        for name, param in self.params.items():
            if name in scales:
                param.copy_(self.decomp[name].compose(scales[name]).to(param.dtype))
            else:
                param.copy_(self._base[name])
        self.active = expert

    @torch.no_grad()
    def restore(self) -> None:
        """Puts back the exact base weights."""
        for name, param in self.params.items():
            param.copy_(self._base[name])
        self.active = None

    @contextmanager
    def using(self, expert: Expert | None) -> Iterator["SVFModel"]:
        """Applies `expert` inside the block and puts back what was active before."""
        previous = self.active
        self.apply(expert)
        try:
            yield self
        finally:
            self.apply(previous)

    @torch.no_grad()
    def write_z(self, z: Mapping[str, torch.Tensor], *, parameterization: str = "direct") -> None:
        """Writes W'(z) into the live target matrices, one matrix at a time (no graph kept)."""
        for name, vec in z.items():
            f = self.decomp[name]
            self.params[name].copy_(f.compose(effective_scale(vec, f.S, parameterization)))
        self.active = None

    def backward_to_z(self, z: Mapping[str, torch.Tensor], weight_grads: Mapping[str, torch.Tensor], *,
                      parameterization: str = "direct") -> None:
        """Accumulates into z[name].grad the gradient that dL/dW' (`weight_grads`) implies.

        W' = U diag(σ ⊙ scale) Vᵀ gives dL/dscaleᵢ = σᵢ · uᵢᵀ (dL/dW') vᵢ: one matrix product per
        target, computed here without the saved copies an autograd graph through W' keeps
        (the difference between fitting a step of an 8B model on one GPU or not).
        """
        for name, vec in z.items():
            f = self.decomp[name]
            with torch.no_grad():
                ct = compute_dtype(f.U)
                g = weight_grads[name].to(ct)
                U, Vh = f.U.to(ct), f.Vh.to(ct)
                # uᵢᵀ G vᵢ for all i, through the smaller of UᵀG [r, in] and G V [out, r];
                # the product in the factors' compute dtype, the reduction in fp32 or wider.
                wide = torch.promote_types(ct, torch.float32)
                if U.shape[0] >= Vh.shape[1]:
                    diag = ((U.T @ g).to(wide) * Vh.to(wide)).sum(1)
                else:
                    diag = (U.to(wide) * (g @ Vh.T).to(wide)).sum(0)
                grad_scale = diag * f.S.to(wide)
            scale = effective_scale(vec, f.S, parameterization)
            scale.backward(grad_scale.to(scale.device, scale.dtype))

    @contextmanager
    def base_swapped(self) -> Iterator["SVFModel"]:
        """Runs the block with the base target matrices and puts the live ones back after.

        Swaps storage where the base copy sits on the same device (no copy, no extra memory);
        otherwise the live matrices are copied aside.
        """
        swapped, stash = {}, {}
        with torch.no_grad():
            for name, p in self.params.items():
                base = self._base[name]
                if base.device == p.device and base.dtype == p.dtype:
                    swapped[name], p.data = p.data, base
                else:
                    stash[name] = p.detach().cpu().clone()
                    p.copy_(base)
        try:
            yield self
        finally:
            with torch.no_grad():
                for name, data in swapped.items():
                    self.params[name].data = data
                for name, saved in stash.items():
                    self.params[name].copy_(saved)

    def composed_weights(self, z: Mapping[str, torch.Tensor], *, parameterization: str = "direct",
                         ) -> dict[str, torch.Tensor]:
        """Returns target name -> W' built from raw vectors z, differentiable in z."""
        out = {}
        for name, vec in z.items():
            f = self.decomp[name]
            scale = effective_scale(vec, f.S, parameterization)
            out[name] = f.compose(scale).to(self.params[name].dtype)
        return out

    def forward(self, weights: Mapping[str, torch.Tensor], *args, **kwargs):
        """Runs the model with `weights` substituted for its target matrices (gradients flow to them)."""
        return functional_call(self.model, dict(weights), args, kwargs, strict=False)
