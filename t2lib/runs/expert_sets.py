"""A preset's expert set on disk: one expert per category, and the classification expert, checked
before any model loads."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from fishfarm.suites.from_file import stamp_mismatch
from t2lib.core.experts import Expert, ExpertMismatchError
from t2lib.paths import experts_dir


def check_expert_set(preset, folder: Path | None = None, *, classification: bool = False) -> Path:
    """Returns the preset's expert folder after checking that its category experts (and, with
    `classification`, its classification expert) are there; raises FileNotFoundError naming the fix."""
    folder = folder or experts_dir(preset.expert_set, create=False)
    missing = [c for c in preset.suite_spec.categories if not (folder / f"{c}.safetensors").exists()]
    if missing:
        raise FileNotFoundError(f"no {', '.join(missing)} expert in {folder}: train them with "
                                f"`python -m t2lib train {preset.cli_options} --all`")
    if classification and not (folder / "classification.safetensors").exists():
        raise FileNotFoundError(f"the cls-expert strategy needs a classification expert in {folder}: "
                                f"`python -m t2lib train {preset.cli_options} --task classification`")
    check_suite_versions(preset, folder)
    return folder


def check_suite_versions(preset, folder: Path) -> None:
    """Raises ExpertMismatchError when an expert in `folder` was trained on another suite file, or on
    another version of the preset's suite file or its data (read from the experts' JSON: no model)."""
    names = [*preset.suite_spec.categories, "classification"]
    for name in names:
        meta = folder / f"{name}.json"
        if not meta.exists():
            continue
        recorded = json.loads(meta.read_text()).get("config", {}).get("suite_file")
        why = stamp_mismatch(recorded, preset.suite_spec)
        if why:
            raise ExpertMismatchError(f"expert {name!r} in {folder}: {why}. Fix: retrain on this version with "
                                      f"`python -m t2lib train {preset.cli_options} --all --fresh`, or put back "
                                      "the version of the file (and data) it was trained on")


def load_expert_set(preset, folder: Path | None = None) -> tuple[dict[str, Expert], Expert | None]:
    """Returns the preset's category experts (loaded and verified) and its classification expert
    (None if absent)."""
    folder = check_expert_set(preset, folder)
    experts = {c: Expert.load(folder / c) for c in preset.suite_spec.categories}
    cls_path = folder / "classification.safetensors"
    return experts, Expert.load(cls_path) if cls_path.exists() else None


def missing_experts(preset, tasks: Sequence[str]) -> list[str]:
    """Returns the training tasks among `tasks` whose expert is not in experts/<preset>/."""
    folder = experts_dir(preset.folder, create=False)
    return [t for t in tasks if not (folder / f"{preset.suite_spec.expert_name(t)}.safetensors").exists()]


def experts_to_train(preset) -> tuple[list[str], str]:
    """Returns (the training tasks whose expert experts/<preset>/ lacks, a sentence saying so); none
    for a preset that uses another preset's experts."""
    if preset.expert_set != preset.folder:
        return [], f"preset {preset.name} uses the {preset.expert_set} experts: nothing to train here"
    tasks = missing_experts(preset, preset.suite_spec.trainable)
    return tasks, f"experts to train for preset {preset.name}: {', '.join(tasks) or 'none, all are there'}"
