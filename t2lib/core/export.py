"""An SVF expert exported as a LoRA adapter that PEFT, vLLM and llama.cpp load.

For a target matrix W = U diag(σ) Vᵀ and an expert that scales σ by s (`effective_scale`: s = z for
"direct" experts, the renormalized sigmoid for "sigmoid" ones), the change the expert makes is
already in SVD form:

    ΔW = W' − W = U diag(σ ⊙ (s − 1)) Vᵀ = U diag(δ) Vᵀ,   δ = σ ⊙ (s − 1).

U and V are orthonormal, so |δ| are the singular values of ΔW, and keeping the k components with
the largest |δ_i| gives its best rank-k approximation (Eckart–Young), exact at full rank:

    lora_B = U_k diag(δ_k)   [out × k],      lora_A = V_kᵀ   [k × in],      ΔW_k = lora_B lora_A.

PEFT computes W x + (lora_alpha / r) · B A x; `lora_alpha = r` makes that scale 1 in every matrix
(`alpha_pattern` equals `rank_pattern` when ranks differ per matrix), as PEFT's own
`peft.tuners.lora.conversion` does for a weight delta it decomposes. That helper takes a PEFT model
and recomputes an SVD of the dense delta; here the delta arrives factored, so the factors are taken
as they are, and the energy rule is the same: the fewest components whose δ² add up to a fraction
`energy` of Σ δ².

A rank-k adapter on W equals the "direct" expert whose scale is s on the kept components and 1
elsewhere (`truncated_expert`): W + U_k diag(δ_k) V_kᵀ = U diag(σ ⊙ s̃) Vᵀ. The kit's own backend
therefore scores a truncated adapter without PEFT (the rank sweep, `t2lib.runs.export`).

A mixture is exported by mixing first (`t2lib.core.mixing.mix`) and exporting the mixed expert
(`export_mixture`); a weighted stack of the experts' adapters is the same thing only at full rank,
for "direct" experts mixed around the base with one α per expert (then ΔW(z') = Σ α_k ΔW_k).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import safetensors.torch
import torch

from fishfarm.data.files import file_sha256
from t2lib.atomic import atomic_path, atomic_write_json, atomic_write_text
from t2lib.core.experts import Expert, tensors_digest
from t2lib.core.mixing import mix
from t2lib.core.svd import Decomposition, parse_target

EXPORT_FORMAT_VERSION = 1
WEIGHTS_FILE, CONFIG_FILE, PROVENANCE_FILE = "adapter_model.safetensors", "adapter_config.json", "provenance.json"
PEFT_PREFIX = "base_model.model."  # PEFT's state-dict names: base_model.model.<module>.lora_A.weight


@dataclass(frozen=True)
class LoRAFactors:
    """One target matrix's adapter: ΔW_k = B A, and the share of ‖ΔW‖_F² it keeps."""
    A: torch.Tensor   # [k, in]: V_kᵀ
    B: torch.Tensor   # [out, k]: U_k diag(δ_k)
    kept: torch.Tensor  # [k] indices of the kept singular components, largest |δ| first
    energy: float     # Σ kept δ² / Σ δ² (1.0 for an expert that leaves the matrix unchanged)


@dataclass(frozen=True)
class LoRAExport:
    """What `export_lora` wrote.

    Attributes:
        folder: the adapter folder (adapter_config.json, adapter_model.safetensors, provenance.json).
        ranks: target name -> rank kept.
        energy: target name -> energy kept (Σ kept δ² / Σ δ²).
        bytes: size of adapter_model.safetensors.
    """
    folder: Path
    ranks: dict[str, int]
    energy: dict[str, float]
    bytes: int

    @property
    def rank(self) -> int:
        """The largest rank of any matrix: the `max_lora_rank` a serving engine needs."""
        return max(self.ranks.values())


def delta_singular_values(expert: Expert, decomp: Decomposition, *, model_id: str = "this model"
                          ) -> dict[str, torch.Tensor]:
    """Returns target -> δ = σ ⊙ (s − 1) (fp32, signed): |δ| are the singular values of the change
    the expert makes to that matrix.

    Raises:
        ExpertMismatchError: the expert was trained on other base weights or targets.
    """
    expert.check_compatible(decomp, model_id=model_id)
    with torch.no_grad():
        return {n: decomp[n].S.float() * (s.detach().to(decomp[n].S.device).float() - 1)
                for n, s in expert.scales(decomp).items()}


def kept_components(delta: torch.Tensor, *, rank: int | None = None, energy: float | None = None) -> torch.Tensor:
    """Returns the indices of the components to keep, largest |δ| first: `rank` of them (all when
    there are fewer), the fewest reaching the fraction `energy` of Σ δ², or all when neither is given."""
    order = torch.argsort(delta.abs(), descending=True, stable=True)
    if rank is not None:
        return order[:rank]
    if energy is None:
        return order
    cumulative = torch.cumsum(delta[order].double() ** 2, dim=0)
    if cumulative[-1] == 0:  # the expert leaves this matrix unchanged: one (zero) component suffices
        return order[:1]
    # smallest k with Σ_{i<k} δ² >= energy · Σ δ² (PEFT's `_find_cutoff_index`)
    k = int(torch.searchsorted(cumulative, energy * cumulative[-1]).item()) + 1
    return order[:min(k, order.numel())]


def _check_budget(targets: Sequence[str], rank: int | Mapping[str, int] | None, energy: float | None) -> None:
    """Raises ValueError unless at most one of rank / energy is given and it is valid."""
    if rank is not None and energy is not None:
        raise ValueError("give a rank or an energy fraction, not both")
    if energy is not None and not 0 < energy <= 1:
        raise ValueError(f"energy is the fraction of ‖ΔW‖² to keep, in (0, 1]; got {energy}")
    if isinstance(rank, Mapping):
        missing = [n for n in targets if n not in rank]
        if missing:
            raise ValueError(f"a per-matrix rank dict must give every target matrix a rank; {len(missing)} "
                             f"have none, e.g. {missing[0]}")
        ranks = list(rank.values())
    else:
        ranks = [] if rank is None else [rank]
    bad = [r for r in ranks if not isinstance(r, int) or isinstance(r, bool) or r < 1]
    if bad:
        raise ValueError(f"a LoRA rank is a whole number >= 1; got {bad[0]!r}")


def lora_factors(expert: Expert, decomp: Decomposition, *, rank: int | Mapping[str, int] | None = None,
                 energy: float | None = None, model_id: str = "this model") -> dict[str, LoRAFactors]:
    """Returns target -> the LoRA factors of the expert's change to it (module docstring), fp32.

    Args:
        expert: the expert (or mixture) to export.
        decomp: the SVD of the base model it was trained on.
        rank: components kept per matrix: one number for all, or target -> number; at most the
            matrix's number of singular values (a larger rank keeps them all).
        energy: instead of a rank, the fraction of each matrix's Σ δ² to keep, in (0, 1].
        model_id: the base model's name, for error messages.
    """
    deltas = delta_singular_values(expert, decomp, model_id=model_id)
    _check_budget(list(deltas), rank, energy)
    out = {}
    for name, delta in deltas.items():
        f = decomp[name]
        k = rank.get(name) if isinstance(rank, Mapping) else rank
        idx = kept_components(delta, rank=k, energy=energy)
        total = float((delta.double() ** 2).sum())
        whole = total == 0 or idx.numel() == delta.numel()  # exactly 1.0, not a sum taken in another order
        kept = 1.0 if whole else float((delta[idx].double() ** 2).sum()) / total
        idx_dev = idx.to(f.U.device)
        B = f.U.float()[:, idx_dev] * delta[idx].to(f.U.device)
        A = f.Vh.float()[idx_dev]
        out[name] = LoRAFactors(A=A.cpu().contiguous(), B=B.cpu().contiguous(), kept=idx.cpu(), energy=kept)
    return out


def truncated_expert(expert: Expert, decomp: Decomposition, *, rank: int | Mapping[str, int] | None = None,
                     energy: float | None = None) -> Expert:
    """Returns the "direct" expert whose scales are the expert's on the components a rank-`rank`
    (or `energy`) adapter keeps and 1 elsewhere: applying it equals loading that adapter on the base
    model (module docstring), so the kit's backend can score a truncated adapter."""
    factors = lora_factors(expert, decomp, rank=rank, energy=energy)
    scales = expert.scales(decomp)
    z = {}
    for name, f in factors.items():
        s = torch.ones_like(decomp[name].S, dtype=torch.float32).cpu()
        s[f.kept] = scales[name].detach().float().cpu()[f.kept]
        z[name] = s
    budget = f"r{rank}" if isinstance(rank, int) else f"e{energy:g}" if energy is not None else "full"
    return Expert(z, expert.base_model, expert.base_fingerprint, "direct", f"{expert.name}-{budget}",
                  expert.base_variant, {"truncated_from": expert.name, "rank": rank, "energy": energy}, {})


def adapter_tensor_bytes(decomp: Decomposition, ranks: Mapping[str, int], *, dtype: torch.dtype = torch.float32) -> int:
    """Returns the bytes of an adapter's tensors at `ranks`: Σ k · (out + in) · itemsize (the
    safetensors file adds its JSON header, a few kB)."""
    size = torch.empty((), dtype=dtype).element_size()
    return sum(k * (decomp[n].U.shape[0] + decomp[n].Vh.shape[1]) * size for n, k in ranks.items())


def expert_source(expert: Expert, path: str | Path | None = None) -> dict:
    """Returns the provenance of an exported expert: name, sha256 of its z, and its file and the
    file's sha256 when it came from one."""
    source = {"name": expert.name, "tensors_sha256": tensors_digest(expert.stored_tensors()),
              "parameterization": expert.parameterization}
    if path is not None:
        file = Path(path)
        file = file if file.suffix == ".safetensors" else file.parent / (file.name + ".safetensors")
        source.update(file=str(file), file_sha256=file_sha256(file))
    return source


def peft_config(ranks: Mapping[str, int], *, base_model: str):
    """Returns the PEFT `LoraConfig` of an adapter with these per-matrix ranks: r the largest rank,
    lora_alpha = r, the other ranks in rank_pattern with alpha_pattern equal to them (scale 1
    everywhere), plain init, no bias, no DoRA, no dropout, on the matrices' module names."""
    from peft import LoraConfig

    r = max(ranks.values())
    modules = {_module(n): k for n, k in ranks.items()}
    pattern = {m: k for m, k in modules.items() if k != r}
    leaves = sorted({parse_target(n)[1].rsplit(".", 1)[-1] for n in ranks})
    return LoraConfig(r=r, lora_alpha=r, target_modules=leaves, rank_pattern=pattern, alpha_pattern=dict(pattern),
                      lora_dropout=0.0, bias="none", init_lora_weights=True, use_dora=False, task_type="CAUSAL_LM",
                      base_model_name_or_path=base_model, inference_mode=True)


def _module(target: str) -> str:
    """model.layers.0.mlp.gate_proj.weight -> model.layers.0.mlp.gate_proj"""
    return target.removesuffix(".weight")


def export_lora(expert: Expert, decomp: Decomposition, folder: str | Path, *,
                rank: int | Mapping[str, int] | None = None, energy: float | None = None,
                base_model: str | None = None, dtype: torch.dtype = torch.float32,
                source: str | Path | None = None, sources: Sequence[dict] | None = None) -> LoRAExport:
    """Writes `expert` as a PEFT LoRA adapter folder; returns what was written.

    The folder holds adapter_config.json (PEFT's `LoraConfig.to_dict()`), adapter_model.safetensors
    (PEFT's names, `base_model.model.<module>.lora_A.weight`; provenance in its metadata) and
    provenance.json (source expert, sha256, base model and fingerprint, rank and energy kept per
    matrix). Each file is written atomically. It loads with `peft.PeftModel.from_pretrained`.

    Args:
        expert: the expert or mixture.
        decomp: the SVD of the base model it was trained on.
        folder: where to write (created if needed; files of an earlier export are replaced).
        rank / energy: the truncation (`lora_factors`); neither: full rank, exact.
        base_model: the base model's id for the config (default: the expert's).
        dtype: dtype of the adapter tensors (bf16 halves the file; fp32 keeps full-rank exactness).
        source: the expert's file, to record its sha256.
        sources: for a mixture, the provenance of each mixed expert (`expert_source`).

    Raises:
        ExpertMismatchError: the expert was trained on other base weights.
        ValueError: an invalid rank or energy.
    """
    base_model = base_model or expert.base_model
    factors = lora_factors(expert, decomp, rank=rank, energy=energy, model_id=base_model)
    ranks = {n: f.A.shape[0] for n, f in factors.items()}
    tensors = {}
    for name, f in factors.items():
        tensors[f"{PEFT_PREFIX}{_module(name)}.lora_A.weight"] = f.A.to(dtype).contiguous()
        tensors[f"{PEFT_PREFIX}{_module(name)}.lora_B.weight"] = f.B.to(dtype).contiguous()
    provenance = {"format_version": EXPORT_FORMAT_VERSION, "kind": "svf-expert-as-lora",
                  "source": expert_source(expert, source), "mixed_from": list(sources or []),
                  "mixing": {k: expert.config[k] for k in ("mixed_from", "alpha") if k in expert.config},
                  "base_model": base_model, "base_variant": expert.base_variant,
                  "base_fingerprint": expert.base_fingerprint, "requested": {"rank": rank, "energy": energy},
                  "dtype": str(dtype).removeprefix("torch."), "rank": max(ranks.values()),
                  "energy_kept": round(energy_kept(expert, decomp, factors), 6),
                  "ranks": ranks, "energy": {n: round(f.energy, 6) for n, f in factors.items()},
                  "adapter_sha256": tensors_digest(tensors)}
    header = {"format": "pt", "source_expert": expert.name, "source_sha256": provenance["source"]["tensors_sha256"],
              "base_model": base_model, "base_fingerprint": expert.base_fingerprint,
              "rank": str(provenance["rank"]), "energy_kept": f"{provenance['energy_kept']:.6f}"}
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / WEIGHTS_FILE) as tmp:
        tmp.write_bytes(safetensors.torch.save(tensors, metadata=header))
    config = peft_config(ranks, base_model=base_model).to_dict()
    atomic_write_text(folder / CONFIG_FILE, json.dumps(config, indent=2, sort_keys=True, default=sorted) + "\n")
    atomic_write_json(folder / PROVENANCE_FILE, provenance)
    return LoRAExport(folder, ranks, {n: f.energy for n, f in factors.items()}, (folder / WEIGHTS_FILE).stat().st_size)


def energy_kept(expert: Expert, decomp: Decomposition, factors: Mapping[str, LoRAFactors]) -> float:
    """Returns the energy `factors` keep over all matrices: Σ kept δ² / Σ δ² (1.0 when the expert
    changes nothing)."""
    deltas = delta_singular_values(expert, decomp)
    total = sum(float((d.double() ** 2).sum()) for d in deltas.values())
    if total == 0 or all(f.kept.numel() == deltas[n].numel() for n, f in factors.items()):
        return 1.0
    kept = sum(float((deltas[n][f.kept].double() ** 2).sum()) for n, f in factors.items())
    return kept / total


def export_mixture(experts: Sequence[Expert], alpha, decomp: Decomposition, folder: str | Path, *,
                   name: str = "mixture", space: str = "z", paths: Sequence[str | Path | None] | None = None,
                   **options) -> LoRAExport:
    """Mixes `experts` with `alpha` into one expert (`t2lib.core.mixing.mix`: one α per expert, per
    layer or per matrix) and exports that (`export_lora`; `options` go there); `paths`, the experts'
    files, are recorded with their sha256. Never a weighted stack of the experts' adapters: that
    differs from the mixture as soon as it is truncated, for sigmoid experts and for per-layer α."""
    mixed = mix(experts, alpha, name=name, space=space, decomp=decomp)
    paths = list(paths) if paths is not None else [None] * len(experts)
    if len(paths) != len(experts):
        raise ValueError(f"give one path (or None) per expert: {len(paths)} paths for {len(experts)} experts")
    sources = [expert_source(e, p) for e, p in zip(experts, paths)]
    return export_lora(mixed, decomp, folder, sources=sources, **options)
