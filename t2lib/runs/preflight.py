"""Preflight of a preset: what it needs (the base model, a GPU with enough memory, disk for the SVD
cache), checked in seconds before any long work, and the plan of `make reproduce` with each step's
expected time."""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from t2lib.core.models import OFFLINE_PACKAGES, lookup_order
from t2lib.paths import cache_dir, experts_dir
from t2lib.presets import Preset

GIB = 1024 ** 3
# Shapes of the paper's models, for the disk check before any weights are at hand.
KNOWN_SHAPES = {
    "HuggingFaceTB/SmolLM2-135M-Instruct": {"hidden_size": 576, "intermediate_size": 1536, "num_hidden_layers": 30,
                                            "num_attention_heads": 9, "num_key_value_heads": 3},
    "meta-llama/Meta-Llama-3-8B-Instruct": {"hidden_size": 4096, "intermediate_size": 14336,
                                            "num_hidden_layers": 32, "num_attention_heads": 32,
                                            "num_key_value_heads": 8},
    "mistralai/Mistral-7B-Instruct-v0.3": {"hidden_size": 4096, "intermediate_size": 14336,
                                           "num_hidden_layers": 32, "num_attention_heads": 32,
                                           "num_key_value_heads": 8},
    "meta-llama/Meta-Llama-3-70B-Instruct": {"hidden_size": 8192, "intermediate_size": 28672,
                                             "num_hidden_layers": 80, "num_attention_heads": 64,
                                             "num_key_value_heads": 8},
}


class PreflightError(RuntimeError):
    """What a preset needs and this machine lacks, each with its fix."""


@dataclass(frozen=True)
class Check:
    """One need of a preset: met or not, what was found, and the fix when it is not met."""
    name: str
    ok: bool
    detail: str
    fix: str = ""


def check_model(preset: Preset) -> Check:
    """Finds the base model where loading it would (`t2lib.core.models.lookup_order`), without
    downloading or converting anything: a local folder, the hub cache, the hub answering for it,
    the offline package."""
    name = preset.model
    found: list[str] = []
    for place in lookup_order(name, source=preset.model_source):
        check = _MODEL_PROBES[place](name, found)
        if check is not None:
            return check
    fix = (f"download it where the hub is reachable (`huggingface-cli download {name}`; gated models need "
           "`huggingface-cli login` and an accepted licence) and copy the hub cache here, or set the "
           "preset's model to a local folder")
    return Check("model", False, f"{name}: {'; '.join(found) or 'no source for it'}", fix)


def _local_probe(name: str, found: list[str]) -> Check:
    local = Path(name).expanduser()
    ok = (local / "config.json").exists()
    return Check("model", ok, f"local folder {local}" + ("" if ok else " has no config.json" if local.is_dir()
                                                          else " does not exist"),
                 "" if ok else "point PRESET's model to a folder written by save_pretrained")


def _hub_cache_probe(name: str, found: list[str]) -> Check | None:
    from huggingface_hub import snapshot_download
    try:
        path = snapshot_download(name, local_files_only=True, allow_patterns=["config.json"])
        return Check("model", True, f"{name} in the local hub cache ({path})")
    except Exception:  # noqa: BLE001 - any failure means "not in the cache"
        found.append("not in the local hub cache")
        return None


def _hub_probe(name: str, found: list[str]) -> Check | None:
    from huggingface_hub import HfApi
    try:
        HfApi().model_info(name, timeout=5)
        return Check("model", True, f"{name} on the hub (downloaded on first use)")
    except Exception as exc:  # noqa: BLE001 - offline, gated, or unknown
        found.append(f"the hub did not answer for it ({type(exc).__name__})")
        return None


def _offline_probe(name: str, found: list[str]) -> Check | None:
    import importlib.util
    pkg = OFFLINE_PACKAGES[name]
    if importlib.util.find_spec(pkg.package) is not None:
        return Check("model", True, f"{name} from the offline package {pkg.requirement}")
    found.append(f"offline package {pkg.requirement} not installed")
    return None


_MODEL_PROBES = {"local": _local_probe, "hub-cache": _hub_cache_probe, "hub": _hub_probe, "offline": _offline_probe}


def check_gpu(preset: Preset) -> Check:
    """Checks for `preset.gpus` CUDA GPUs with `gpu_memory_gib` each (no need: always met)."""
    need, count = preset.gpu_memory_gib, preset.gpus
    if not need:
        return Check("gpu", True, "not needed (runs on the CPU)")
    import torch
    what = f"{count} GPUs with {need:.0f} GiB each" if count > 1 else f"one with {need:.0f} GiB"
    fix = ("run on a machine with " + (f"{count} 80 GB GPUs" if count > 1 else "an 80 GB GPU (A100/H100/H200 80 GB)")
           + ", or use PRESET=rehearsal on the CPU to rehearse every paper-scale path")
    if not torch.cuda.is_available():
        return Check("gpu", False, f"no CUDA GPU; preset {preset.name} needs {what}", fix)
    found = torch.cuda.device_count()
    if found < count:
        return Check("gpu", False, f"{found} CUDA GPU(s); preset {preset.name} needs {what}", fix)
    total = min(torch.cuda.get_device_properties(i).total_memory for i in range(count)) / GIB
    ok = total >= need
    return Check("gpu", ok, f"{count} x {torch.cuda.get_device_name(0)} with {total:.1f} GiB (needs {need:.0f} GiB)",
                 "" if ok else "use a GPU with more memory, or lower the preset's micro_batch_size")


def svd_cache_bytes(preset: Preset, config: dict) -> int:
    """Returns the size of the SVD cache of the preset's target matrices: U, σ and Vᵀ per matrix."""
    from t2lib.core.svd import target_modules

    h, inter, layers = config["hidden_size"], config["intermediate_size"], config["num_hidden_layers"]
    kv = h // config["num_attention_heads"] * config.get("num_key_value_heads", config["num_attention_heads"])
    shapes = {"mlp.gate_proj": (inter, h), "mlp.up_proj": (inter, h), "mlp.down_proj": (h, inter),
              "self_attn.q_proj": (h, h), "self_attn.k_proj": (kv, h), "self_attn.v_proj": (kv, h),
              "self_attn.o_proj": (h, h)}
    width = 2 if preset.svd_storage_dtype in ("bfloat16", "float16") else 4
    total = 0
    for module in target_modules(preset.targets):
        m, n = shapes[module]
        r = min(m, n)
        total += (m * r + r + r * n) * width
    return total * layers


def model_config(preset: Preset) -> dict | None:
    """Returns the base model's config.json fields when they can be had without loading weights."""
    local = Path(preset.model).expanduser() / "config.json"
    if local.exists():
        return json.loads(local.read_text())
    if preset.model in KNOWN_SHAPES:
        return KNOWN_SHAPES[preset.model]
    try:
        from huggingface_hub import hf_hub_download
        return json.loads(Path(hf_hub_download(preset.model, "config.json", local_files_only=True)).read_text())
    except Exception:  # noqa: BLE001 - not in the cache: the model check says so
        return None


def check_disk(preset: Preset) -> Check:
    """Checks that the cache folder's disk holds the SVD cache (when it is not there yet)."""
    config = model_config(preset)
    if config is None:
        return Check("disk", True, "SVD cache size unknown until the model is at hand")
    need = svd_cache_bytes(preset, config)
    folder = cache_dir()
    free = shutil.disk_usage(folder if folder.exists() else Path.home()).free
    ok = free >= need
    return Check("disk", ok, f"SVD cache of the {preset.targets} targets: {need / GIB:.1f} GiB; "
                 f"{free / GIB:.0f} GiB free under {folder}",
                 "" if ok else "free disk space there, or set T2_CACHE_DIR to a larger disk")


def preflight(preset: Preset) -> list[Check]:
    """Returns every check of what the preset needs (model, GPU, disk)."""
    return [check_model(preset), check_gpu(preset), check_disk(preset)]


def require(preset: Preset) -> list[Check]:
    """Returns the checks, or raises PreflightError naming every need that is not met and its fix."""
    checks = preflight(preset)
    failed = [c for c in checks if not c.ok]
    if failed:
        lines = "\n".join(f"  - {c.name}: {c.detail}\n    fix: {c.fix}" for c in failed)
        raise PreflightError(f"preset {preset.name} cannot run here:\n{lines}")
    return checks


@dataclass(frozen=True)
class Step:
    """One step of a reproduction: its command line and its expected time."""
    what: str
    command: str
    minutes: float
    basis: str


def plan(preset: Preset) -> list[Step]:
    """Returns the steps `python -m t2lib reproduce` would take, with their expected minutes."""
    from t2lib.runs.notebooks import OUTSIDE_REPRODUCTION, list_notebooks, takes_parameter

    suite = preset.suite_spec
    steps = []
    folder = experts_dir(preset.folder, create=False)
    for task in suite.trainable if preset.expert_set == preset.folder else ():
        name = suite.expert_name(task)
        if (folder / f"{name}.safetensors").exists():
            continue
        minutes, basis = expected_minutes(preset, "train", task)
        sweep = len(preset.train_kl_sweep) or 1
        steps.append(Step(f"train the {name} expert on {task}" + (f" ({sweep} λ values)" if sweep > 1 else ""),
                          f"python -m t2lib train {preset.cli_options} --task {task}", minutes, basis))
    own = preset.folder != preset.name  # a suite file: the notebooks that take SUITE, as `reproduce` runs them
    for nb in (n for n in list_notebooks() if (takes_parameter(n, "SUITE") if own else n.name[:2] not in OUTSIDE_REPRODUCTION)):
        minutes, basis = expected_minutes(preset, "notebook", nb.stem)
        command = (f"python -m t2lib reproduce {preset.cli_options}" if own
                   else f"python -m t2lib notebooks --preset {preset.name} --only {nb.name[:2]}")
        steps.append(Step(f"notebook {nb.stem}", command, minutes, basis))
    return steps


# Minutes per step on a 2-core CPU: tiny from `make reproduce` on a fresh clone (docs/install.md, "Two
# commands"; 03-05 take seconds where build/adapt holds `make adapt`'s records; 09 from its book run),
# its "train" from `make experts`; rehearsal from its test run; a step not named takes the "notebook" value.
# Presets not listed are estimated.
MEASURED_MINUTES = {
    "tiny": {"train": 6.0, "00_quickstart": 1.6, "01_svd_inspection": 1.0, "02_train_expert": 7.6,
             "03_prompt_dispatch": 3.8, "04_cls_expert_dispatch": 2.4, "05_few_shot": 6.1, "07_expert_explorer": 0.3,
             "09_export_lora": 0.3, "notebook": 0.1},
    # the rehearsal test of 2026-12-02 (10.0 min in all): experts 4.8 min for four, notebooks 5.3 min
    "rehearsal": {"train": 1.2, "00_quickstart": 0.4, "01_svd_inspection": 0.4, "02_train_expert": 1.2,
                  "03_prompt_dispatch": 0.8, "04_cls_expert_dispatch": 0.8, "05_few_shot": 1.4,
                  "06_paper_tables": 0.1, "07_expert_explorer": 0.3, "08_baselines_ablations": 0.1,
                  "notebook": 0.8},
}

# Paper-scale rates (docs/benchmarks.md): HF generate on an H200 with Llama-3-8B shapes made 3,760 tok/s
# at batch 256 and 992 tok/s at batch 64; the kit's update took 2.35 s for 64 x 384 tokens on an H100.
GEN_TOK_S_BIG, GEN_TOK_S_SMALL, UPDATE_S_PER_TOKEN = 3760.0, 992.0, 2.35 / (64 * 384)
ANSWER_TOKENS, PROMPT_TOKENS = 300, 200  # assumed means per answer and prompt
UNSEEN_TEST_SIZES = {"math": 5000, "humaneval": 164, "arc_challenge": 1172}  # paper Table 2's test sets


def _gen_minutes(answers: float, *, batch: int) -> float:
    rate = GEN_TOK_S_BIG if batch >= 256 else GEN_TOK_S_SMALL
    return answers * ANSWER_TOKENS / rate / 60


def expected_minutes(preset: Preset, kind: str, name: str) -> tuple[float, str]:
    """Returns (minutes, what the number rests on) for one step."""
    table = MEASURED_MINUTES.get(preset.name)
    if table is not None:
        return table.get(name, table[kind]), f"measured on a 2-core CPU (preset {preset.name})"
    basis = "estimate: GPU rates of docs/benchmarks.md, 300-token answers"
    c = preset.train
    lambdas = len(preset.train_kl_sweep) or 1
    per_step = (_gen_minutes(c.batch_size, batch=c.batch_size)
                + UPDATE_S_PER_TOKEN * c.batch_size * (PROMPT_TOKENS + ANSWER_TOKENS) / 60
                + _gen_minutes(200, batch=preset.batch_size) / c.eval_every)  # ~200 validation questions
    training = c.steps * per_step * lambdas
    if kind == "train" or name.startswith("02"):
        return training, basis + f", {c.steps} steps x {lambdas} λ"
    unseen = sum(UNSEEN_TEST_SIZES.values()) if preset.eval_limit is None else 3 * preset.eval_limit
    answer_all = _gen_minutes(unseen, batch=preset.batch_size)
    if name.startswith(("03", "04")):
        return 2 * answer_all, basis + ": base and adapted answers on the unseen test sets"
    if name.startswith("05"):
        m = preset.cem
        search = _gen_minutes(3 * m.iterations * m.population * m.shots, batch=m.shots)
        return 2 * answer_all + search, basis + f": CEM {m.iterations} x {m.population} candidates on {m.shots} shots"
    if name.startswith("00"):
        return 5.0, basis + ": a dozen answers"
    return 10.0, basis + ": loads the model and the SVD, little generation"
