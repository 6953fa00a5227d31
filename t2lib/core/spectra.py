"""Statistics of singular values: the spectra of the target matrices (notebook 01), and what an
expert did to them (notebooks 02 and 07).

Every shift statistic reads the *scale* an expert applies to σ (`Expert.scales`), so "direct" and
"sigmoid" experts read the same way: a scale of 1 is the base model. Two units are offered:
- "scale − 1": the relative change of each singular value (what z itself says);
- "Δσ / σ₁": the absolute change σ_i·(scale_i − 1), relative to the matrix's largest singular
  value: how much each component moved the matrix (the top components dominate, as σ does).
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np
import torch

from t2lib.core.experts import Expert
from t2lib.core.mixing import complete
from t2lib.core.svd import Decomposition, module_types, parse_target


def spectrum_table(decomp: Decomposition, *, energy_fractions: Sequence[float] = (0.01, 0.1, 0.5)) -> list[dict]:
    """Returns one row of spectrum statistics per target matrix.

    Columns: name, layer, module, rank r, sigma_max, sigma_min, condition number, effective rank
    (exp of the entropy of σ/Σσ), `energy_top{p}` = share of Σσ² held by the top p·r singular
    values, and `rank_for_90` = the share of r needed to hold 90% of the energy.
    """
    rows = []
    for name, f in decomp.items():
        s = f.S.detach().double().cpu()
        layer, module = parse_target(name)
        p = s / s.sum()
        energy = torch.cumsum(s.square(), 0) / s.square().sum()
        r = s.numel()
        row = {"name": name, "layer": layer, "module": module, "rank": r,
               "sigma_max": float(s[0]), "sigma_min": float(s[-1]),
               "condition": float(s[0] / s[-1]) if s[-1] > 0 else math.inf,
               "effective_rank": float(torch.exp(-(p * torch.log(p.clamp_min(1e-300))).sum()))}
        for frac in energy_fractions:
            k = max(1, round(frac * r))
            row[f"energy_top{frac:g}"] = float(energy[k - 1])
        row["rank_for_90"] = float((int(torch.searchsorted(energy, torch.tensor(0.9, dtype=energy.dtype))) + 1) / r)
        rows.append(row)
    return rows

def summarize_by_module(rows: Sequence[dict]) -> list[dict]:
    """Returns one row per module type: the layer-mean of each statistic of `spectrum_table` rows."""
    out = []
    for module in dict.fromkeys(r["module"] for r in rows):
        mine = [r for r in rows if r["module"] == module]
        mean = {k: sum(r[k] for r in mine) / len(mine) for k, v in mine[0].items()
                if isinstance(v, float) and k not in ("condition",)}
        out.append({"module": module, "matrices": len(mine), "rank": mine[0]["rank"],
                    **{k: round(v, 3) for k, v in mean.items()},
                    "effective_rank_share": round(mean["effective_rank"] / mine[0]["rank"], 3)})
    return out

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


UNITS = ("scale − 1", "Δσ / σ₁")


def names_by_layer(decomp: Decomposition, module: str) -> list[str]:
    names = sorted((parse_target(n)[0], n) for n in decomp if parse_target(n)[1] == module)
    if not names:
        raise ValueError(f"no target matrix of type {module!r}; the decomposition has {module_types(decomp)}")
    return [n for _, n in names]


def _scales(expert: Expert, decomp: Decomposition) -> dict[str, torch.Tensor]:
    """Returns target name -> scale for every target (1 where the expert does not cover it)."""
    return complete(expert, decomp).scales(decomp)


def _shift(scale: torch.Tensor, sigma: torch.Tensor, unit: str) -> np.ndarray:
    d = scale.detach().double().cpu() - 1
    if unit == UNITS[1]:
        s = sigma.detach().double().cpu()
        d = d * s / s[0]
    elif unit != UNITS[0]:
        raise ValueError(f"unknown unit {unit!r}; choose one of {UNITS}")
    return d.numpy()


def shift_grid(expert: Expert, decomp: Decomposition, module: str, *, unit: str = UNITS[0]) -> np.ndarray:
    """Returns a (layers x r) array: the shift of singular value i of `module` in each layer."""
    scales = _scales(expert, decomp)
    return np.stack([_shift(scales[n], decomp[n].S, unit) for n in names_by_layer(decomp, module)])


def shift_profile(expert: Expert, decomp: Decomposition, *, layer: int, module: str,
                  unit: str = UNITS[0]) -> np.ndarray:
    """Returns the shift of each singular value (index 0: the largest) of one target matrix."""
    names = names_by_layer(decomp, module)
    if not 0 <= layer < len(names):
        raise ValueError(f"layer {layer} is out of range: {module} has layers 0..{len(names) - 1}")
    return _shift(_scales(expert, decomp)[names[layer]], decomp[names[layer]].S, unit)


def relative_change(expert: Expert, decomp: Decomposition) -> dict[str, float]:
    """Returns target name -> ‖W' − W‖_F / ‖W‖_F with W = U diag(σ) Vᵀ, the decomposition (the
    base matrix up to the precision the factors are stored in). U and V are orthonormal, so this
    is ‖σ ⊙ (scale − 1)‖ / ‖σ‖, no matrix formed."""
    out = {}
    for name, scale in _scales(expert, decomp).items():
        s = decomp[name].S.detach().double().cpu()
        out[name] = float((s * (scale.detach().double().cpu() - 1)).norm() / s.norm())
    return out


def change_by_module(expert: Expert, decomp: Decomposition) -> dict[str, float]:
    """Returns module type -> the mean over layers of `relative_change`."""
    change = relative_change(expert, decomp)
    return {m: float(np.mean([change[n] for n in names_by_layer(decomp, m)])) for m in module_types(decomp)}


def num_layers(decomp: Decomposition, module: str) -> int:
    """Returns how many layers have a target matrix of type `module`."""
    return len(names_by_layer(decomp, module))


def similarity(experts: Mapping[str, Expert], decomp: Decomposition, *, unit: str = UNITS[0],
               per_layer: bool = False) -> np.ndarray:
    """Returns the cosine similarity of the experts' shifts: (K x K) over all targets, or
    (layers x K x K) with per_layer. Near 0: the experts moved unrelated directions."""
    modules = module_types(decomp)
    layers = len(names_by_layer(decomp, modules[0]))
    # (K, layers, entries of one layer)
    flat = np.stack([np.concatenate([shift_grid(e, decomp, m, unit=unit) for m in modules], axis=1)
                     for e in experts.values()])
    groups = [flat[:, layer] for layer in range(layers)] if per_layer else [flat.reshape(len(experts), -1)]
    out = []
    for g in groups:
        norms = np.linalg.norm(g, axis=1)
        norms[norms == 0] = 1.0  # an unchanged expert (all scales 1) is orthogonal to everything
        out.append((g @ g.T) / np.outer(norms, norms))
    return np.stack(out) if per_layer else out[0]


def top_components(expert: Expert, decomp: Decomposition, *, k: int = 10, unit: str = UNITS[1]) -> list[dict]:
    """Returns the k singular components the expert moved most (by |shift| in `unit`): layer,
    module, index i (0: the largest σ), σ_i, scale, shift."""
    rows = []
    for name, scale in _scales(expert, decomp).items():
        layer, module = parse_target(name)
        shift = _shift(scale, decomp[name].S, unit)
        for i in np.argsort(-np.abs(shift))[:k]:
            rows.append({"layer": layer, "module": module, "index": int(i), "sigma": float(decomp[name].S[i]),
                         "scale": float(scale[i]), "shift": float(shift[i])})
    return sorted(rows, key=lambda r: -abs(r["shift"]))[:k]
