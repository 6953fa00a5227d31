"""Result tables: a CSV a reader opens, and beside it a JSON with the same rows, what backs them
(per-question results, confusion counts, α) and the run information (`t2lib.runinfo`)."""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Sequence

from t2lib.atomic import atomic_write_csv
from t2lib.paths import figures_dir
from t2lib.runinfo import write_results

# Table 1 (SVF and LoRA against the base model on the training tasks' test splits): one row per expert.
TABLE1_COLUMNS = ("expert", "task", "n", "base_accuracy", "expert_accuracy", "gain_points", "best_step",
                  "steps", "kl_coef", "val_base_accuracy", "val_accuracy", "train_seconds", "test_seconds")
# Table 2 (adaptation on the unseen tasks): one row per (task, strategy).
TABLE2_COLUMNS = ("task", "category", "strategy", "n", "accuracy", "first_pass_s", "second_pass_s")


def table_columns(rows: Sequence[dict], columns: Sequence[str]) -> tuple[str, ...]:
    """Returns `columns`, plus "accuracy_official" when every row has it (paper tasks)."""
    official = bool(rows) and all("accuracy_official" in r for r in rows)
    return (*columns, "accuracy_official") if official else tuple(columns)


def write_table(preset, name: str, rows: Sequence[dict], columns: Sequence[str], *, results: Any,
                started: float | None = None, config: Any = None) -> Path:
    """Writes <name>.csv (`rows` under `columns`) and <name>.json (`results` with run information)
    into the preset's figures folder; returns the CSV's path."""
    folder = figures_dir(preset.name)
    path = folder / f"{name}.csv"
    atomic_write_csv(path, rows, columns)
    write_results(folder / f"{name}.json", results, preset=preset, config=config, started=started)
    return path


def merge_table1(rows: Sequence[dict], preset, *, name: str = "table1_svf_vs_base") -> Path:
    """Merges rows into the preset's <name>.csv (one row per expert; default table1_svf_vs_base,
    the LoRA baseline writes table1_lora), and their per-question test results into <name>.json;
    returns the CSV's path. Rows without test scores (trained with no test) are left out."""
    path = figures_dir(preset.name) / f"{name}.csv"
    merged: dict[str, dict] = {}
    if path.exists():
        with path.open(newline="") as f:
            merged = {r["expert"]: r for r in csv.DictReader(f)}
    written = {r["expert"] for r in rows if "base_accuracy" in r}
    scored = {r["expert"]: r["per_question"] for r in rows if r["expert"] in written and "per_question" in r}
    for row in rows:
        if row["expert"] in written:
            merged[row["expert"]] = {k: row.get(k, "") for k in TABLE1_COLUMNS}
    atomic_write_csv(path, (merged[k] for k in sorted(merged)), TABLE1_COLUMNS)
    json_path = path.with_suffix(".json")
    if scored or json_path.exists():
        old = json.loads(json_path.read_text())["results"]["per_question"] if json_path.exists() else {}
        # a rewritten row replaces its expert's per-question results, or drops them if it has none
        kept = {k: v for k, v in old.items() if k in merged and k not in written}
        write_results(json_path, {"per_question": {**kept, **scored}}, preset=preset)
    return path
