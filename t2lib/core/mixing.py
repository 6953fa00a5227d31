"""Mixing experts: z' = Σ_k α_k z_k (paper §3.2, few-shot adaptation), and what makes experts mixable.

With the "sigmoid" parameterization (the official code's) z' = Σ α_k z_k, as in the paper.
With "direct" (z = 1 is the base model) the mixture is taken around the base,
z' = 1 + Σ α_k (z_k − 1), which is the paper's formula whenever Σ α_k = 1 and keeps α = 0 at the
base model instead of at z = 0 (all singular values removed). That is mixing in z space, as the
official `WeightedCombination` does with the raw vectors; `CEMConfig.mix_space="scale"` mixes the
scales the experts apply to σ instead, s' = 1 + Σ α_k (s_k − 1), and gives a "direct" expert (for
sigmoid experts the two differ: s_k = sigmoid(z_k), renormalized, is not linear in z_k).

α comes one per expert, one per expert per layer (`per_layer`), or one per expert per target
matrix (`per_matrix`: the official script's PER_LAYER=true, whose "layers" are the parameter
tensors it adapts).
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

import torch

from t2lib.core.experts import Expert, ExpertMismatchError, effective_scale, identity_value
from t2lib.core.svd import Decomposition, parse_target

MIX_SPACES = ("z", "scale")


def mix(experts: Sequence[Expert], alpha: torch.Tensor | Sequence[float], *, name: str = "mixture", space: str = "z",
        decomp=None) -> Expert:
    """Returns the mixture of `experts` with weights `alpha` (paper §3.2; module docstring for the
    forms and the spaces); names what does not fit (experts, α's shape, non-finite values).

    Args:
        experts: K experts trained on the same base model, with the same targets, the same number
            of singular values per target, and the same parameterization.
        alpha: mixing weights, shape [K] (one per expert), [K, L] (one per expert per layer; L
            is the number of layers) or [K, M] (one per expert per target matrix, in the order of
            `target_order`; the official `WeightedCombination` with per_layer=true). Any finite
            numbers: weights outside [0, 1] extrapolate, which is allowed (CEM keeps its own bounds).
        name: the mixture's name.
        space: "z" or "scale"; "scale" needs `decomp` (the σ of each target) for sigmoid experts.

    Raises:
        ExpertMismatchError: the experts differ in base weights, parameterization, targets or sizes.
        ValueError: no experts, non-finite z, or α of the wrong shape or not finite.
    """
    if not experts:
        raise ValueError("mix needs at least one expert")
    if space not in MIX_SPACES:
        raise ValueError(f"unknown mixing space {space!r}; choose one of {', '.join(MIX_SPACES)}")
    first = experts[0]
    if space == "scale" and first.parameterization != "direct":
        if decomp is None:
            raise ValueError("mixing sigmoid experts in scale space needs the decomposition (their σ): pass decomp=")
        experts = [Expert({n: effective_scale(v, decomp[n].S, e.parameterization).float() for n, v in e.z.items()},
                          e.base_model, e.base_fingerprint, "direct", e.name, e.base_variant) for e in experts]
        first = experts[0]
    if first.parameterization != "direct":
        return _weighted_sum(experts, alpha, name=name)
    base = identity_value("direct")
    shifted = [Expert({n: v - base for n, v in e.z.items()}, e.base_model, e.base_fingerprint, e.parameterization,
                      e.name, e.base_variant) for e in experts]
    mixed = _weighted_sum(shifted, alpha, name=name)
    mixed.z = {n: v + base for n, v in mixed.z.items()}
    return mixed


def _weighted_sum(experts: Sequence[Expert], alpha: torch.Tensor | Sequence[float], *, name: str) -> Expert:
    """Returns the expert whose vectors are z' = Σ_k α_k z_k.

    """
    if not experts:
        raise ValueError("mix needs at least one expert")
    _check_mixable(experts)
    first = experts[0]
    num_layers = max(parse_target(n)[0] for n in first.z) + 1
    order = {name: i for i, name in enumerate(target_order(first.z))}
    alpha = _check_alpha(alpha, experts, num_layers, len(order))
    z = {}
    for target in first.z:
        layer, _ = parse_target(target)
        if alpha.dim() == 1:
            weights = alpha
        elif alpha.shape[1] == num_layers:  # with one target per layer both readings are the same
            weights = alpha[:, layer]
        else:
            weights = alpha[:, order[target]]
        z[target] = sum(w * e.z[target].float() for w, e in zip(weights, experts))
    return Expert(z, first.base_model, first.base_fingerprint, first.parameterization, name,
                  first.base_variant, config={"mixed_from": [e.name for e in experts],
                                              "alpha": alpha.tolist()})


def complete(expert: Expert, decomp: Decomposition) -> Expert:
    """Returns a copy of `expert` with a z for every target of `decomp`, in its order: the
    identity (the base matrix) where the expert has none. Experts trained on other target sets
    can then be mixed."""
    expert.check_compatible(decomp)
    fill = identity_value(expert.parameterization)
    z = {n: expert.z[n] if n in expert.z else torch.full_like(f.S, fill, dtype=torch.float32)
         for n, f in decomp.items()}
    return dataclasses.replace(expert, z=z)


def _check_mixable(experts: Sequence[Expert]) -> None:
    """Raises unless the experts can be mixed target by target, entry by entry."""
    first = experts[0]
    for k, e in enumerate(experts):
        if not isinstance(e, Expert):
            raise TypeError(f"mix takes Expert objects; item {k} is a {type(e).__name__}")
        if not e.z:
            raise ValueError(f"expert '{e.name}' has no z vectors to mix")
        if e.base_fingerprint != first.base_fingerprint:
            raise ExpertMismatchError(f"cannot mix expert '{e.name}' with '{first.name}': different base weights")
        if e.parameterization != first.parameterization:
            raise ExpertMismatchError(f"cannot mix expert '{e.name}' ({e.parameterization}) with "
                                      f"'{first.name}' ({first.parameterization})")
        if set(e.z) != set(first.z):
            missing = [n for n in first.z if n not in e.z]
            extra = [n for n in e.z if n not in first.z]
            what = "; ".join(f"'{e.name}' {label} {len(names)}, e.g. {names[0]}" for names, label in
                             ((missing, "lacks"), (extra, "has another")) if names)
            raise ExpertMismatchError(f"cannot mix expert '{e.name}' with '{first.name}': different targets "
                                      f"({what}); t2lib.core.mixing.complete(expert, decomp) gives each "
                                      "a z for every target of the decomposition")
        for target, v in e.z.items():
            size = first.z[target].numel()
            if v.dim() != 1:
                raise ExpertMismatchError(f"expert '{e.name}' has a z of shape {tuple(v.shape)} for {target}; "
                                          "a z is one vector per target matrix")
            if v.numel() != size:
                raise ExpertMismatchError(f"cannot mix expert '{e.name}' with '{first.name}': {target} has "
                                          f"{v.numel()} entries in '{e.name}' and {size} in '{first.name}' "
                                          "(one per singular value); they were made for different models")
            if not torch.isfinite(v).all():
                raise ValueError(f"expert '{e.name}' has NaN or inf in its z for {target}; retrain it or "
                                 "load it again from its file")


def target_order(names) -> list[str]:
    """Returns target names by layer, then by name: the column order of a per-matrix α."""
    return sorted(names, key=lambda n: (parse_target(n)[0], n))


def _check_alpha(alpha, experts: Sequence[Expert], num_layers: int, num_matrices: int) -> torch.Tensor:
    """Returns α as an fp32 tensor of shape [K], [K, L] or [K, M]; raises ValueError on anything else."""
    k = len(experts)
    expected = (f"({k},), ({k}, {num_layers}) or ({k}, {num_matrices}) for {k} experts over {num_layers} layers "
                f"and {num_matrices} target matrices")
    try:
        alpha = torch.as_tensor(alpha, dtype=torch.float32).detach()
    except (TypeError, ValueError, RuntimeError) as e:
        raise ValueError(f"alpha must be numbers of shape {expected}; got {alpha!r} ({e})") from None
    if alpha.shape not in ((k,), (k, num_layers), (k, num_matrices)):
        raise ValueError(f"alpha has shape {tuple(alpha.shape)}; expected {expected}")
    bad = (~torch.isfinite(alpha)).nonzero()
    if len(bad):
        index = bad[0].tolist()
        where = (f" at {'layer' if alpha.shape[1] == num_layers else 'matrix'} {index[1]}"
                 if len(index) > 1 else "")
        raise ValueError(f"alpha for expert '{experts[index[0]].name}'{where} is {alpha[tuple(index)].item()}: "
                         "mixing weights must be finite numbers")
    return alpha
