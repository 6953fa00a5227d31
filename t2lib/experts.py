"""SVF experts: one vector z per target matrix, saved as files a user can share.

An expert file pair is `<path>.safetensors` (one z per target matrix) and `<path>.json`
(base model id and weights fingerprint, targets and sizes, parameterization, training config,
metrics). The identity fields are also stored in the safetensors header, so a JSON that does not
belong to its tensors is caught on load.

Parameterizations (how z turns into the scale applied to the singular values σ):
- "direct": scale = z, as written in the paper (W' = U diag(σ ⊙ z) Vᵀ); z = 1 is the base model.
- "sigmoid": the official code's: scale = sigmoid(z) · Σσ / Σ(σ ⊙ sigmoid(z)), which keeps the sum
  of singular values fixed; z initialised at 0.1 (paper Table 6) is the base model.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from t2lib.atomic import atomic_path, atomic_write_json
from t2lib.svd import Decomposition, parse_target

PARAMETERIZATIONS = ("direct", "sigmoid")
FORMAT_VERSION = 1


class ExpertMismatchError(ValueError):
    """Raised when an expert is applied to, or mixed with, something it was not trained for."""


def effective_scale(z: torch.Tensor, sigma: torch.Tensor, parameterization: str) -> torch.Tensor:
    """Returns the factor that multiplies σ for a raw vector z (differentiable in z)."""
    if parameterization == "direct":
        return z
    if parameterization == "sigmoid":
        g = torch.sigmoid(z)
        sigma = sigma.to(g.device, g.dtype)
        return g * (sigma.sum() / (sigma * g).sum())
    raise ValueError(f"unknown parameterization '{parameterization}'; choose one of {PARAMETERIZATIONS}")


def identity_value(parameterization: str) -> float:
    """Returns the constant z at which an expert leaves the base weights unchanged."""
    return {"direct": 1.0, "sigmoid": 0.1}[parameterization]


@dataclass
class Expert:
    """A set of z vectors, one per target matrix, and what they were trained on.

    Args:
        z: target parameter name -> raw vector (fp32, one entry per singular value).
        base_model: id of the base model it was trained on.
        base_fingerprint: fingerprint of that model's target matrices (see `Decomposition`).
        parameterization: "direct" | "sigmoid" (module docstring).
        name: a short name ("math", "code", ...).
        base_variant: what distinguishes the base weights, e.g. "gguf-q4_1"; "" for the hub's.
        config: the training configuration.
        metrics: results worth keeping with the expert (accuracies, steps).
    """

    z: dict[str, torch.Tensor]
    base_model: str
    base_fingerprint: str
    parameterization: str = "direct"
    name: str = ""
    base_variant: str = ""
    config: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.parameterization not in PARAMETERIZATIONS:
            raise ValueError(f"unknown parameterization '{self.parameterization}'; choose one of {PARAMETERIZATIONS}")

    @classmethod
    def identity(cls, decomp: Decomposition, *, base_model: str, parameterization: str = "direct",
                 name: str = "identity", base_variant: str = "", noise_std: float = 0.0,
                 seed: int = 0) -> "Expert":
        """Returns an expert that leaves the base model unchanged (plus optional Gaussian noise).

        The official code initialises z at 0.1 + 0.01·N(0, 1) with the "sigmoid" parameterization.
        """
        gen = torch.Generator().manual_seed(seed)
        value = identity_value(parameterization)
        z = {}
        for target, size in decomp.shapes().items():
            z[target] = value + noise_std * torch.randn(size, generator=gen)
        return cls(z, base_model, decomp.base_fingerprint, parameterization, name, base_variant)

    @property
    def num_params(self) -> int:
        return sum(v.numel() for v in self.z.values())

    def scales(self, decomp: Decomposition) -> dict[str, torch.Tensor]:
        """Returns target name -> the factor that multiplies σ."""
        return {n: effective_scale(v, decomp[n].S, self.parameterization) for n, v in self.z.items()}

    def check_compatible(self, decomp: Decomposition, *, model_id: str = "this model") -> None:
        """Raises ExpertMismatchError unless this expert fits the decomposed base model."""
        label = f"expert '{self.name or 'unnamed'}'"
        mine, theirs = _layers(self.z), _layers(decomp)
        if len(mine) and max(mine) >= len(theirs) and theirs:
            raise ExpertMismatchError(f"{label} was trained on {self.base_model} ({max(mine) + 1} layers), "
                                      f"{model_id} has {max(theirs) + 1} layers")
        missing = [n for n in self.z if n not in decomp]
        if missing:
            raise ExpertMismatchError(f"{label} has target matrices this model's decomposition lacks "
                                      f"({missing[0]}, ...): decompose {model_id} with the expert's targets")
        sizes = decomp.shapes()
        for n, v in self.z.items():
            if v.numel() != sizes[n]:
                raise ExpertMismatchError(f"{label} has {v.numel()} singular values for {n}; {model_id} "
                                          f"has {sizes[n]}: it was trained on {self.base_model}")
        if self.base_fingerprint != decomp.base_fingerprint:
            raise ExpertMismatchError(
                f"{label} was trained on {self.base_model}{_variant(self.base_variant)} (weights "
                f"{self.base_fingerprint}); {model_id} has other weights ({decomp.base_fingerprint}) "
                "of the same shape, e.g. the hub's copy versus the offline GGUF one. Load the base "
                "model the expert was trained on, or retrain the expert on this one.")

    def metadata(self) -> dict:
        """Returns the JSON-serialisable description stored beside the tensors."""
        return {"format_version": FORMAT_VERSION, "name": self.name, "base_model": self.base_model,
                "base_variant": self.base_variant, "base_fingerprint": self.base_fingerprint,
                "parameterization": self.parameterization,
                "targets": {n: v.numel() for n, v in self.z.items()}, "num_params": self.num_params,
                "config": self.config, "metrics": self.metrics}

    def save(self, path: str | Path) -> Path:
        """Writes `<path>.safetensors` and `<path>.json` atomically; returns the safetensors path."""
        stem = _stem(path)
        meta = self.metadata()
        header = {k: str(meta[k]) for k in ("name", "base_model", "base_fingerprint", "parameterization")}
        with atomic_path(_with(stem, ".safetensors")) as tmp:
            save_file({n: v.detach().float().cpu().contiguous() for n, v in self.z.items()}, str(tmp),
                      metadata=header)
        atomic_write_json(_with(stem, ".json"), meta)
        return _with(stem, ".safetensors")

    @classmethod
    def load(cls, path: str | Path, *, device: str | torch.device = "cpu") -> "Expert":
        """Reads an expert written by `save` (give the .safetensors, the .json, or the stem)."""
        stem = _stem(path)
        tensors_path, meta_path = _with(stem, ".safetensors"), _with(stem, ".json")
        for p in (tensors_path, meta_path):
            if not p.exists():
                raise FileNotFoundError(f"expert file {p} is missing; an expert is a .safetensors + .json pair")
        meta = json.loads(meta_path.read_text())
        with safe_open(str(tensors_path), framework="pt", device=str(device)) as f:
            header = f.metadata() or {}
            z = {n: f.get_tensor(n) for n in f.keys()}
        for key in ("base_fingerprint", "parameterization"):
            if header.get(key) != str(meta.get(key)):
                raise ExpertMismatchError(f"{meta_path} says {key}={meta.get(key)!r} but {tensors_path} "
                                          f"says {header.get(key)!r}: the pair does not belong together")
        order = list(meta["targets"])
        return cls({n: z[n] for n in order}, meta["base_model"], meta["base_fingerprint"],
                   meta["parameterization"], meta.get("name", ""), meta.get("base_variant", ""),
                   meta.get("config", {}), meta.get("metrics", {}))


def shift_table(expert: Expert, decomp: Decomposition) -> list[dict]:
    """Returns one row per target matrix: layer, module, and how far the expert moved its singular
    values (mean and max of |scale − 1|, where scale multiplies σ; the same for both parameterizations)."""
    rows = []
    for name, scale in expert.scales(decomp).items():
        layer, module = parse_target(name)
        d = (scale.detach().float().cpu() - 1).abs()
        rows.append({"layer": layer, "module": module, "mean_abs_shift": float(d.mean()),
                     "max_abs_shift": float(d.max())})
    return rows


def mix(experts: Sequence[Expert], alpha: torch.Tensor | Sequence[float], *, name: str = "mixture") -> Expert:
    """Returns the expert z' = Σ_k α_k z_k (paper §3.2, few-shot adaptation).

    Args:
        experts: K experts trained on the same base model, with the same targets and parameterization.
        alpha: mixing weights, shape [K] (one per expert) or [K, L] (one per expert per layer,
            as in the official code); L is the number of layers.
    """
    if not experts:
        raise ValueError("mix needs at least one expert")
    first = experts[0]
    for e in experts[1:]:
        if e.base_fingerprint != first.base_fingerprint:
            raise ExpertMismatchError(f"cannot mix expert '{e.name}' with '{first.name}': different base weights")
        if e.parameterization != first.parameterization:
            raise ExpertMismatchError(f"cannot mix expert '{e.name}' ({e.parameterization}) with "
                                      f"'{first.name}' ({first.parameterization})")
        if list(e.z) != list(first.z):
            raise ExpertMismatchError(f"cannot mix expert '{e.name}' with '{first.name}': different targets")
    alpha = torch.as_tensor(alpha, dtype=torch.float32)
    num_layers = max(_layers(first.z)) + 1
    if alpha.shape not in ((len(experts),), (len(experts), num_layers)):
        raise ValueError(f"alpha has shape {tuple(alpha.shape)}; expected ({len(experts)},) or "
                         f"({len(experts)}, {num_layers}) for {len(experts)} experts over {num_layers} layers")
    z = {}
    for target in first.z:
        layer, _ = parse_target(target)
        weights = alpha if alpha.dim() == 1 else alpha[:, layer]
        z[target] = sum(w * e.z[target].float() for w, e in zip(weights, experts))
    return Expert(z, first.base_model, first.base_fingerprint, first.parameterization, name,
                  first.base_variant, config={"mixed_from": [e.name for e in experts],
                                              "alpha": alpha.tolist()})


def _layers(names: Mapping[str, object]) -> list[int]:
    return sorted({parse_target(n)[0] for n in names})


def _variant(variant: str) -> str:
    return f" ({variant})" if variant else ""


def _stem(path: str | Path) -> Path:
    path = Path(path)
    return path.with_suffix("") if path.suffix in (".safetensors", ".json") else path


def _with(stem: Path, suffix: str) -> Path:
    return stem.parent / (stem.name + suffix)  # not with_suffix: "math.v2" must keep its ".v2"
