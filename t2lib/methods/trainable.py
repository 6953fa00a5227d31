"""What a trainer trains: the small interface SVF and LoRA both implement.

`ReinforceTrainer` (`t2lib.methods.reinforce`) runs the same loop, objectives, checkpoints and
validation for any method; the method says which tensors are trained and how the live model
answers with them:

| | `SVFParams` (here) | `LoRAParams` (`t2lib.methods.lora`) |
|---|---|---|
| params | one vector z per target matrix | PEFT's lora_A and lora_B matrices |
| answering with params | W' = U diag(σ ⊙ scale(z)) Vᵀ written into the live matrices | the adapter's weights set to params |
| the base model | the exact base matrices written back | the adapter switched off |
| gradient passes | each target layer computes U((σ ⊙ scale(z)) ⊙ Vᵀx) | the adapter live, its dropout on |
| neutral params | z = 1 (direct) or 0.1 (sigmoid): W' = W | B = 0 |
| what training makes | an `Expert` | a `LoRAAdapter` |

A new method is one class with these members, passed to `ReinforceTrainer`.
"""
from __future__ import annotations

import contextlib
from typing import ContextManager, Iterator, Mapping, Protocol

import torch

from t2lib.core.experts import Expert, identity_value
from t2lib.core.svf import SVFModel


class Trainable(Protocol):
    """The trained tensors of one method, and how the live model answers with them.

    Attributes:
        params: the trained tensors by name (created by `start`); the optimizer updates them in place.
        model: the torch model the gradient passes run.
        base_fingerprint: the fingerprint of the base weights (checkpoints and artifacts record it).
    """
    params: dict[str, torch.nn.Parameter]
    model: torch.nn.Module
    base_fingerprint: str

    def start(self, config) -> dict[str, torch.nn.Parameter]:
        """Creates `params` at their initial values for a run with `config` (a `ReinforceConfig`)."""

    def answering(self, params: Mapping[str, torch.Tensor] | None) -> ContextManager:
        """Inside the block the live model answers with `params` (None: as the base model)."""

    def write_live(self, params: Mapping[str, torch.Tensor]) -> None:
        """Makes the live model answer with `params` until `write_base` (the rollouts)."""

    def write_base(self) -> None:
        """Puts the weights the gradient passes start from back in place."""

    def grad_context(self) -> ContextManager:
        """Inside the block a forward pass depends on `params` with gradients."""

    def reference_context(self) -> ContextManager:
        """Inside the block (after `write_base`) a forward pass is the base model's (the KL reference)."""

    def neutral(self) -> dict[str, torch.Tensor]:
        """Returns params that leave the base model unchanged (no step beat it on validation)."""

    def artifact(self, params: Mapping[str, torch.Tensor], *, name: str, config: dict):
        """Returns what training produces from `params`, a file a user can share."""

    def using(self, artifact) -> ContextManager:
        """Inside the block the live model answers with a trained artifact (None: the base model)."""


class SVFParams:
    """SVF's trained tensors: one vector z per target matrix of `svf` (`Trainable`).

    Args:
        svf: the base model wrapped for SVF; its live weights change during training and are
            restored by `write_base`.
    """

    def __init__(self, svf: SVFModel):
        self.svf, self.model = svf, svf.model
        self.base_fingerprint = svf.base_fingerprint
        self.params: dict[str, torch.nn.Parameter] = {}
        self.parameterization = "direct"

    def start(self, config) -> dict[str, torch.nn.Parameter]:
        self.parameterization = config.parameterization
        self.svf.model.requires_grad_(False)  # only z gets gradients
        expert = self.svf.new_expert(parameterization=config.parameterization, noise_std=config.init_noise,
                                     seed=config.seed)
        device = next(iter(self.svf.decomp.values())).S.device
        self.params = {n: torch.nn.Parameter(expert.z[n].to(device, torch.float32)) for n in self.svf.decomp}
        return self.params

    @contextlib.contextmanager
    def answering(self, params: Mapping[str, torch.Tensor] | None) -> Iterator[None]:
        if params is None:
            self.write_base()
        else:
            self.write_live(params)
        try:
            yield
        finally:
            self.write_base()

    def write_live(self, params: Mapping[str, torch.Tensor]) -> None:
        self.svf.write_z(params, parameterization=self.parameterization)

    def write_base(self) -> None:
        self.svf.restore()

    def grad_context(self) -> ContextManager:
        return self.svf.factored(self.params, parameterization=self.parameterization)

    def reference_context(self) -> ContextManager:
        return contextlib.nullcontext()  # after write_base the live matrices are the base's

    def neutral(self) -> dict[str, torch.Tensor]:
        value = identity_value(self.parameterization)
        return {n: torch.full_like(p, value) for n, p in self.params.items()}

    def artifact(self, params: Mapping[str, torch.Tensor], *, name: str, config: dict) -> Expert:
        svf = self.svf
        return Expert({n: v.detach().cpu().clone() for n, v in params.items()}, svf.model_id, svf.base_fingerprint,
                      self.parameterization, name, svf.base_variant, config=config)

    def using(self, artifact: Expert | None) -> ContextManager:
        return self.svf.using(artifact)
