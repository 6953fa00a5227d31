"""Singular Value Fine-tuning on a live model: apply, switch and remove experts exactly.

`SVFModel` wraps a base model and its `Decomposition`. Applying an expert writes
W' = U diag(σ ⊙ scale) Vᵀ into each target matrix (one matrix product per target); the base
weights are kept aside, so `restore()` puts back the exact original tensors, bit for bit.
For training, `write_z` puts W'(z) into the live matrices (rollouts) and `factored` makes each
target layer compute U((σ ⊙ scale(z)) ⊙ Vᵀx) from the factors, so gradients reach z directly;
`composed_weights` builds W' with an autograd graph to z and `forward` runs the model with those
weights substituted (torch.func.functional_call), leaving the live weights untouched (simple, and
the reference the tests compare against).

Every write to the live target matrices (apply, restore, write_z) ends by handing the changed
tensors to the backends attached with `attach` (`Backend.sync_weights`), so a backend with its
own copy of the weights (vLLM) answers with the same weights as the model; callers never sync.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Mapping

import torch
from torch.func import functional_call

from t2lib.core.experts import Expert, effective_scale
from t2lib.core.fingerprint import fingerprint
from t2lib.core.svd import Decomposition


class SVFModel:
    """A base model whose target matrices can be swapped for an expert's and back.

    Args:
        model: the base model, with its base weights loaded.
        decomp: the SVD of its target matrices (from `t2lib.core.svd.decompose`).
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
        self._backends: list = []

    def attach(self, backend) -> None:
        """Keeps `backend` in step with the live target matrices from now on (and syncs it now).

        Every later apply / restore / write_z hands the target tensors to `backend.sync_weights`.
        """
        if not any(b is backend for b in self._backends):
            self._backends.append(backend)
        if not getattr(backend, "shares_weights", False):
            backend.sync_weights(self.params)

    def _synced(self) -> None:
        for backend in self._backends:
            backend.sync_weights(self.params)

    @property
    def base_fingerprint(self) -> str:
        return self.decomp.base_fingerprint

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
        self._write(expert.scales(self.decomp))
        self.active = expert

    def _write(self, scales: Mapping[str, torch.Tensor]) -> None:
        """Writes U diag(σ ⊙ scale) Vᵀ into each target in `scales`, the base weights elsewhere."""
        for name, param in self.params.items():
            if name in scales:
                param.copy_(self.decomp[name].compose(scales[name]).to(param.dtype))
            else:
                param.copy_(self._base[name])
        self._synced()

    @torch.no_grad()
    def restore(self) -> None:
        """Puts back the exact base weights."""
        self._write({})
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
        """Writes W'(z) into the live target matrices (no graph kept); targets z lacks get their
        base weights."""
        self._write({n: effective_scale(v, self.decomp[n].S, parameterization) for n, v in z.items()})
        self.active = None

    @contextmanager
    def factored(self, z: Mapping[str, torch.Tensor], *, parameterization: str = "direct") -> Iterator["SVFModel"]:
        """Inside the block, each target layer computes x ↦ U ((σ ⊙ scale(z)) ⊙ (Vᵀ x)) from the
        factors, differentiable in z, instead of multiplying by its weight matrix.

        Mathematically the same as running W'(z), but backpropagation reaches z without dL/dW':
        no weight-gradient products, no (out × in) gradient per matrix, no composition. The
        live weights are not read for the targets (the rest of the model runs as it is).
        """
        patched = []
        try:
            for name, vec in z.items():
                module = self.model.get_submodule(name.rsplit(".", 1)[0])
                if not isinstance(module, torch.nn.Linear):
                    raise TypeError(f"target {name} belongs to a {type(module).__name__}, not a Linear layer")
                module.forward = _factored_forward(module, self.decomp[name], vec, parameterization)
                patched.append(module)
            yield self
        finally:
            for module in patched:
                del module.forward  # the class's forward again

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


def _factored_forward(module: torch.nn.Linear, f, vec: torch.Tensor, parameterization: str):
    bias = module.bias

    def forward(x: torch.Tensor) -> torch.Tensor:
        # Factors in the input's dtype unless autocast picks one (it casts both sides itself).
        h = torch.nn.functional.linear(x, f.Vh.to(x.dtype))
        s = f.S * effective_scale(vec, f.S, parameterization)
        return torch.nn.functional.linear(h * s.to(h.dtype), f.U.to(h.dtype), bias)

    return forward
