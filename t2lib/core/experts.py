"""SVF experts: one vector z per target matrix, saved as files a user can share.

An expert file pair is `<path>.safetensors` (one z per target matrix) and `<path>.json`
(base model id and weights fingerprint, targets and sizes, parameterization, training config,
metrics, and the sha256 of the tensors). The identity fields and the digest are also stored in
the safetensors header, so a JSON that does not belong to its tensors is caught on load, and so is
a damaged or edited tensor file. Loading checks everything before returning (see `Expert.load`);
any failure is an `ExpertFileError` that names the file, what is wrong and how to get a good copy.

The same expert gives the same bytes in any process: the safetensors header is written with
sorted keys (safetensors itself writes its metadata in hash order), the JSON in a fixed order.

Parameterizations (how z turns into the scale applied to the singular values σ):
- "direct": scale = z, as written in the paper (W' = U diag(σ ⊙ z) Vᵀ); z = 1 is the base model.
- "sigmoid": the official code's: scale = sigmoid(z) · Σσ / Σ(σ ⊙ sigmoid(z)), which keeps the sum
  of singular values fixed; z initialised at 0.1 (paper Table 6) is the base model.
"""
from __future__ import annotations

import hashlib
import json
import struct
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import safetensors.torch
import torch

from t2lib.atomic import atomic_path, atomic_write_json
from t2lib.locks import locked
from t2lib.core.svd import Decomposition, module_types, parse_target

PARAMETERIZATIONS = ("direct", "sigmoid")
# 2: the tensors' sha256 in the JSON and the header, "partial", sorted header. 1 (no digest) still loads.
FORMAT_VERSION = 2
REQUIRED_FIELDS = ("base_model", "base_fingerprint", "parameterization", "targets")


class ExpertMismatchError(ValueError):
    """Raised when an expert is applied to, or mixed with, something it was not trained for."""


class ExpertFileError(ValueError):
    """Raised when an expert file is missing, damaged, or disagrees with its JSON.

    The message names the file, what is wrong, and the fix (restore the file or retrain it).
    """


class ExpertFileMissingError(ExpertFileError, FileNotFoundError):
    """Raised when one file of an expert's .safetensors + .json pair does not exist."""


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
                "model the expert was trained on, or retrain the expert on this one; to apply it to "
                "other weights on purpose (paper Table 5), use expert.transferred_to(decomp).")

    def transferred_to(self, decomp: Decomposition, *, model_id: str = "this model") -> "Expert":
        """Returns a copy of this expert for other base weights with the same target shapes: the
        explicit opt-in past the weights check (paper Table 5, cross-model transfer). Its config
        records where it came from.

        Raises:
            ExpertMismatchError: the targets or their sizes differ (z must fit σ entry by entry).
        """
        probe = Expert(self.z, self.base_model, decomp.base_fingerprint, self.parameterization, self.name)
        probe.check_compatible(decomp, model_id=model_id)  # shapes only: the fingerprint now matches
        return Expert({n: v.clone() for n, v in self.z.items()}, model_id, decomp.base_fingerprint,
                      self.parameterization, self.name, "",
                      {**self.config, "transferred_from": {"base_model": self.base_model,
                                                           "base_variant": self.base_variant,
                                                           "base_fingerprint": self.base_fingerprint}},
                      dict(self.metrics))

    def to_lora(self, folder: str | Path, decomp: Decomposition, *, rank: int | Mapping[str, int] | None = None,
                energy: float | None = None, **options):
        """Writes this expert as a PEFT LoRA adapter folder (exact at full rank, the largest
        |σ(s − 1)| components at `rank` or `energy`); returns a `t2lib.core.export.LoRAExport`.
        `options` go to `t2lib.core.export.export_lora` (base_model, dtype, source)."""
        from t2lib.core.export import export_lora  # export builds on this module

        return export_lora(self, decomp, folder, rank=rank, energy=energy, **options)

    def stored_tensors(self) -> dict[str, torch.Tensor]:
        """Returns z as it is written to disk: fp32, on the CPU, contiguous, in target order."""
        return {n: v.detach().float().cpu().contiguous() for n, v in self.z.items()}

    def metadata(self) -> dict:
        """Returns the JSON-serialisable description stored beside the tensors.

        "partial" is True when the targets do not cover every layer × module type they name (an
        expert on a subset of the target matrices); a file whose targets leave such gaps loads
        only when its JSON says "partial": true, so a target list cut short is caught.
        """
        return {"format_version": FORMAT_VERSION, "name": self.name, "base_model": self.base_model,
                "base_variant": self.base_variant, "base_fingerprint": self.base_fingerprint,
                "parameterization": self.parameterization,
                "targets": {n: v.numel() for n, v in self.z.items()}, "num_params": self.num_params,
                "partial": bool(_grid_gaps(self.z)), "tensors_sha256": tensors_digest(self.stored_tensors()),
                "config": self.config, "metrics": self.metrics}

    def save(self, path: str | Path) -> Path:
        """Writes `<path>.safetensors` and `<path>.json` atomically; returns the safetensors path.

        The same expert gives byte-identical files in any process; the files get the mode the
        user's umask allows (0644 under the usual 022), as experts are meant to be shared.
        """
        if not self.z:
            raise ValueError(f"expert '{self.name}' has no z vectors to save")
        stem = _stem(path)
        meta = self.metadata()
        header = {k: str(meta[k]) for k in ("format_version", "name", "base_model", "base_fingerprint",
                                             "parameterization", "tensors_sha256")}
        blob = _sorted_header(safetensors.torch.save(self.stored_tensors(), metadata=header))
        stem.parent.mkdir(parents=True, exist_ok=True)
        with locked(_with(stem, ".safetensors")):  # the pair is written whole before another process reads it
            with atomic_path(_with(stem, ".safetensors")) as tmp:
                tmp.write_bytes(blob)
            atomic_write_json(_with(stem, ".json"), meta)
        return _with(stem, ".safetensors")

    @classmethod
    def load(cls, path: str | Path, *, device: str | torch.device = "cpu") -> "Expert":
        """Reads and verifies an expert written by `save` (give the .safetensors, the .json, or the stem).

        Checks, before returning: both files exist and parse; the JSON has the fields an expert
        needs; the JSON and the safetensors header name the same base weights, parameterization
        and digest; the tensors are exactly the JSON's targets with its sizes (1-D fp32, finite);
        their sha256 matches the recorded one; a target set with gaps is declared "partial".
        A file from before digests (format 1) loads with a warning saying how to re-save it.

        Raises:
            ExpertFileError: naming the file, the problem and the fix (ExpertFileMissingError,
                also a FileNotFoundError, when a file of the pair does not exist).
        """
        stem = _stem(path)
        tensors_path, meta_path = _with(stem, ".safetensors"), _with(stem, ".json")
        with locked(tensors_path):  # never half of a pair another process is writing
            meta = _read_meta(meta_path, tensors_path)
            header, z = _read_tensors(tensors_path, meta)
        _check_agreement(meta, header, z, meta_path=meta_path, tensors_path=tensors_path)
        order = list(meta["targets"])
        return cls({n: z[n].to(device) for n in order}, meta["base_model"], meta["base_fingerprint"],
                   meta["parameterization"], meta.get("name", ""), meta.get("base_variant", ""),
                   meta.get("config", {}), meta.get("metrics", {}))


def shuffled(expert: Expert, *, seed: int = 0) -> Expert:
    """Returns `expert` with each matrix's z permuted at random (the paper's "shuffled σ" control,
    Table 5): every value stays in its matrix, only which singular value it scales changes."""
    gen = torch.Generator().manual_seed(seed)
    z = {n: v[torch.randperm(v.numel(), generator=gen).to(v.device)] for n, v in expert.z.items()}
    return Expert(z, expert.base_model, expert.base_fingerprint, expert.parameterization, f"{expert.name}-shuffled",
                  expert.base_variant, {**expert.config, "shuffled_seed": seed}, {})


def tensors_digest(tensors: Mapping[str, torch.Tensor]) -> str:
    """Returns the sha256 (hex) of named tensors: for each name in sorted order, its name, dtype,
    shape and little-endian bytes. It depends on the values only, not on how a file lays them out."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(json.dumps([name, str(t.dtype).removeprefix("torch."), list(t.shape)]).encode() + b"\n")
        array = t.numpy()
        h.update(array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes())
    return h.hexdigest()


def _sorted_header(blob: bytes) -> bytes:
    """Returns safetensors bytes with the header's keys sorted (the tensor data is already laid
    out in a fixed order; the metadata is written in hash order, different in each process)."""
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n])
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # safetensors pads its header to 8 bytes with spaces
    return struct.pack("<Q", len(text)) + text + blob[8 + n:]


def _fix(meta: Mapping | None, stem: Path) -> str:
    """Returns how to get a good copy of the expert at `stem` (with the retrain command its JSON
    config gives, when it gives one)."""
    return f"Fix: {_remedy(meta, stem)}."


def _remedy(meta: Mapping | None, stem: Path) -> str:
    config = meta.get("config") if isinstance(meta, Mapping) else None
    restore = ("restore both files from where they came from (`git checkout -- experts/` for the "
               "experts shipped with the kit, or download them again)")
    if isinstance(config, Mapping) and config.get("preset") and config.get("task"):
        command = f"python -m t2lib train --preset {config['preset']} --task {config['task']} --out {stem}"
    else:
        command = f"python -m t2lib train --preset <preset> --task <task> --out {stem}"
    return f"{restore}, or retrain it with `{command}`"


def _read_meta(meta_path: Path, tensors_path: Path) -> dict:
    """Returns the expert JSON after checking both files exist and the JSON has what load needs."""
    stem = _stem(meta_path)
    missing = [p for p in (tensors_path, meta_path) if not p.exists()]
    if missing:
        other = tensors_path if missing == [meta_path] else meta_path
        meta = _try_json(other) if other.exists() else None
        raise ExpertFileMissingError(f"expert file {missing[0]} is missing; an expert is a .safetensors + "
                                     f".json pair. {_fix(meta, stem)}")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ExpertFileError(f"expert file {meta_path} is not valid JSON ({e}). {_fix(None, stem)}") from None
    if not isinstance(meta, dict):
        raise ExpertFileError(f"expert file {meta_path} holds a {type(meta).__name__}, not the expert's "
                              f"description (a JSON object). {_fix(None, stem)}")
    absent = [k for k in REQUIRED_FIELDS if k not in meta]
    if absent:
        raise ExpertFileError(f"expert file {meta_path} lacks {', '.join(repr(k) for k in absent)}; an "
                              f"expert's JSON records {', '.join(REQUIRED_FIELDS)}. {_fix(meta, stem)}")
    targets = meta["targets"]
    if not (isinstance(targets, dict) and targets
            and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in targets.values())):
        raise ExpertFileError(f"expert file {meta_path} has 'targets' that are not a non-empty map of target "
                              f"name -> number of singular values. {_fix(meta, stem)}")
    if meta["parameterization"] not in PARAMETERIZATIONS:
        raise ExpertFileError(f"expert file {meta_path} has parameterization {meta['parameterization']!r}; "
                              f"the kit knows {PARAMETERIZATIONS}. {_fix(meta, stem)}")
    version = meta.get("format_version", 1)
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ExpertFileError(f"expert file {meta_path} has format_version {version!r}; this kit reads "
                              f"versions up to {FORMAT_VERSION}. Fix: update the kit (git pull), or "
                              f"{_remedy(meta, stem)}.")
    return meta


def _try_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None


def _read_tensors(tensors_path: Path, meta: dict) -> tuple[dict[str, str], dict[str, torch.Tensor]]:
    """Returns (safetensors header metadata, tensors on the CPU); any read failure is an ExpertFileError."""
    fix = _fix(meta, _stem(tensors_path))
    blob = tensors_path.read_bytes()
    if not blob:
        raise ExpertFileError(f"expert file {tensors_path} is empty (0 bytes). {fix}")
    try:
        (n,) = struct.unpack("<Q", blob[:8])
        header = json.loads(blob[8:8 + n]).get("__metadata__") or {}
        tensors = safetensors.torch.load(blob)
    except Exception as e:  # SafetensorError, struct.error, JSONDecodeError...: all mean the same to a user
        raise ExpertFileError(f"expert file {tensors_path} ({len(blob)} bytes) is not a readable safetensors "
                              f"file: it was cut short, emptied or overwritten ({type(e).__name__}: {e}). "
                              f"{fix}") from None
    return header, tensors


def _check_agreement(meta: dict, header: Mapping[str, str], z: Mapping[str, torch.Tensor], *,
                     meta_path: Path, tensors_path: Path) -> None:
    """Raises ExpertFileError unless the JSON, the safetensors header and the tensors agree."""
    fix = _fix(meta, _stem(meta_path))
    for key in ("base_fingerprint", "parameterization"):
        if header.get(key) != str(meta.get(key)):
            raise ExpertFileError(f"{meta_path} says {key}={meta.get(key)!r} but {tensors_path} says "
                                  f"{header.get(key)!r}: the pair does not belong together. {fix}")
    recorded = meta.get("tensors_sha256")
    if header.get("tensors_sha256") != recorded:
        raise ExpertFileError(f"{meta_path} records tensors_sha256={recorded!r} but {tensors_path} says "
                              f"{header.get('tensors_sha256')!r}: the pair does not belong together. {fix}")
    targets = meta["targets"]
    missing = [n for n in targets if n not in z]
    extra = [n for n in z if n not in targets]
    if missing or extra:
        detail = "; ".join(f"{len(names)} {label}, e.g. {names[0]}" for names, label in
                           ((missing, "listed in the JSON are not in the tensors"),
                            (extra, "tensors are not listed in the JSON")) if names)
        raise ExpertFileError(f"{meta_path} lists {len(targets)} targets and {tensors_path} holds "
                              f"{len(z)} tensors that differ ({detail}): the JSON and the tensors must "
                              f"name the same target matrices. {fix}")
    for name, size in targets.items():
        t = z[name]
        if t.dtype != torch.float32 or t.dim() != 1 or t.numel() != size:
            raise ExpertFileError(f"{tensors_path} holds a {str(t.dtype).removeprefix('torch.')} tensor of shape "
                                  f"{tuple(t.shape)} for {name}; {meta_path} says {size} singular values "
                                  f"(a 1-D float32 z). {fix}")
    if "num_params" in meta and meta["num_params"] != sum(targets.values()):
        raise ExpertFileError(f"{meta_path} says num_params={meta['num_params']} but its targets add up to "
                              f"{sum(targets.values())}. {fix}")
    try:
        gaps = _grid_gaps(targets)
    except ValueError as e:
        raise ExpertFileError(f"{meta_path} lists a target that is not a decoder-layer matrix ({e}). "
                              f"{fix}") from None
    if gaps and meta.get("partial") is not True:
        raise ExpertFileError(f"{meta_path} lists {len(targets)} targets that leave out {len(gaps)} of the "
                              f"layer × module slots they span (e.g. {gaps[0]}), and does not say "
                              f"\"partial\": true. An expert on a subset of the target matrices must say so; "
                              f"otherwise its target list was cut short. {fix}")
    if recorded is None:
        warnings.warn(f"expert {tensors_path} has no tensors_sha256 (written before format 2), so damage to "
                      f"its tensors cannot be detected; re-save it once with `Expert.load(p).save(p)`",
                      UserWarning, stacklevel=3)
    elif tensors_digest(z) != recorded:
        raise ExpertFileError(f"expert file {tensors_path} is damaged: its tensors do not match the sha256 "
                              f"recorded in {meta_path} (the file was overwritten, cut short or edited). {fix}")
    bad = next((n for n, t in z.items() if not torch.isfinite(t).all()), None)
    if bad:
        raise ExpertFileError(f"{tensors_path} has NaN or inf in its z for {bad}. {fix}")


def _grid_gaps(names) -> list[str]:
    """Returns the (layer, module) slots within the layers and module types of `names` that
    `names` leaves out (none for an expert on every target matrix of a model)."""
    present = {parse_target(n) for n in names}
    if not present:
        return []
    modules = module_types(names)
    return [f"layer {layer} {m}" for layer in range(max(l for l, _ in present) + 1) for m in modules
            if (layer, m) not in present]


def _layers(names: Mapping[str, object]) -> list[int]:
    return sorted({parse_target(n)[0] for n in names})


def _variant(variant: str) -> str:
    return f" ({variant})" if variant else ""


def _stem(path: str | Path) -> Path:
    path = Path(path)
    return path.with_suffix("") if path.suffix in (".safetensors", ".json") else path


def _with(stem: Path, suffix: str) -> Path:
    return stem.parent / (stem.name + suffix)  # not with_suffix: "math.v2" must keep its ".v2"
