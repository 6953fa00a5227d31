"""Result tables: a CSV a reader opens, and beside it a JSON with the same rows, what backs them
(per-question results, confusion counts, α) and the run information (`t2lib.runinfo`).

The JSON is the record: it holds the table's rows and the sha256 of the CSV derived from them,
and is written first. Both files are written under the table's lock (`t2lib.locks.locked`), so two
processes finishing together never lose a row, and a reader that takes the lock (`read_table`)
never sees the two disagree. A crash between the two writes leaves a CSV older than its JSON:
`read_table` says so and writes the CSV again from the JSON.
"""
from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path
from typing import Any, Sequence

from t2lib.atomic import atomic_write_json, atomic_write_text, csv_text
from t2lib.locks import locked
from t2lib.paths import figures_dir
from t2lib.runinfo import run_info

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
    """Writes <name>.json (`results`, the rows and run information) and <name>.csv (`rows` under
    `columns`) into the preset's figures folder, under the table's lock; returns the CSV's path."""
    path = figures_dir(preset.folder) / f"{name}.csv"
    run = run_info(preset=preset, config=config, started=started)  # before the lock: it asks git
    with locked(path):
        _write_pair(path, rows, columns, results, run)
    return path


def read_table(path: str | Path) -> dict:
    """Returns {"columns", "rows", "results", "run"} of the table at `path` (its .csv or .json),
    read under its lock from the JSON. A CSV that is not the one derived from the JSON's rows (a
    crash between the two writes) is written again from them, and the repair is printed.

    Raises:
        FileNotFoundError: no JSON beside the CSV.
        ValueError: a JSON written before tables held their rows; rerun the command that wrote it.
    """
    path = Path(path).with_suffix(".csv")
    with locked(path):
        record = json.loads(path.with_suffix(".json").read_text())
        table = record.get("table")
        if table is None:
            raise ValueError(f"{path.with_suffix('.json')} holds no table rows (written by an older version "
                             "of the kit); rerun the command that writes it")
        text = csv_text(table["rows"], table["columns"], path=path)
        if not path.exists() or hashlib.sha256(path.read_bytes()).hexdigest() != table["csv_sha256"]:
            atomic_write_text(path, text)
            print(f"{path} did not match {path.with_suffix('.json').name} (a write was interrupted); "
                  "wrote it again from the JSON", flush=True)
    return {"columns": table["columns"], "rows": table["rows"], "results": record["results"], "run": record["run"]}


def _write_pair(path: Path, rows: Sequence[dict], columns: Sequence[str], results: Any, run: dict) -> None:
    """Writes the JSON record, then the CSV derived from it (the caller holds the lock)."""
    text = csv_text(rows, columns, path=path)  # a row without a column is refused before anything is written
    table = {"columns": list(columns), "rows": [{c: r[c] for c in columns} for r in rows],
             "csv_sha256": hashlib.sha256(text.encode("utf-8")).hexdigest()}
    atomic_write_json(path.with_suffix(".json"), {"results": results, "run": run, "table": table})
    atomic_write_text(path, text)


def merge_table1(rows: Sequence[dict], preset, *, name: str = "table1_svf_vs_base") -> Path:
    """Merges rows into the preset's <name>.csv (one row per expert; default table1_svf_vs_base,
    the LoRA baseline writes table1_lora), and their per-question test results into <name>.json,
    under the table's lock; returns the CSV's path. Rows without test scores (trained with no
    test) are left out."""
    path = figures_dir(preset.folder) / f"{name}.csv"
    written = {r["expert"] for r in rows if "base_accuracy" in r}
    run = run_info(preset=preset)  # before the lock: it asks git
    with locked(path):
        merged, old = _table1_now(path)
        scored = {r["expert"]: r["per_question"] for r in rows if r["expert"] in written and "per_question" in r}
        for row in rows:
            if row["expert"] in written:
                merged[row["expert"]] = {k: row.get(k, "") for k in TABLE1_COLUMNS}
        # a rewritten row replaces its expert's per-question results, or drops them if it has none
        kept = {k: v for k, v in old.items() if k in merged and k not in written}
        _write_pair(path, [merged[k] for k in sorted(merged)], TABLE1_COLUMNS,
                    {"per_question": {**kept, **scored}}, run)
    return path


def _table1_now(path: Path) -> tuple[dict[str, dict], dict]:
    """Returns the rows (by expert) and per-question results a Table 1 holds now: from its JSON
    record, or from the CSV for a table written before the JSON held its rows."""
    json_path = path.with_suffix(".json")
    record = json.loads(json_path.read_text()) if json_path.exists() else {}
    old = (record.get("results") or {}).get("per_question") or {}
    if "table" in record:
        return {r["expert"]: r for r in record["table"]["rows"]}, old
    if path.exists():
        with path.open(newline="") as f:
            return {r["expert"]: r for r in csv.DictReader(f)}, old
    return {}, old
