"""Reads a dataset repository from the Hugging Face hub: local cache first, then online.

The repository is fetched with `huggingface_hub.snapshot_download` (only the files a split
needs) and its parquet or jsonl files are read row by row; the `datasets` library is not used.
``HF_HUB_OFFLINE=1`` limits this to the local cache. Reading parquet needs `pyarrow`.
"""
from __future__ import annotations

import gzip
import json
import os
from pathlib import Path
from typing import Any, Sequence

from huggingface_hub import constants, snapshot_download


class HubUnavailableError(RuntimeError):
    """Raised when a dataset cannot be fetched: no network, offline mode, or not cached."""


class HubFormatError(RuntimeError):
    """Raised when fetched files cannot be read or lack the columns a loader needs."""


def hub_offline() -> bool:
    """Returns whether ``HF_HUB_OFFLINE`` is set (read now, not at import time)."""
    value = os.environ.get("HF_HUB_OFFLINE")
    if value is None:
        return bool(constants.HF_HUB_OFFLINE)
    return value.strip().upper() in {"1", "ON", "YES", "TRUE"}


def _matching(folder: Path, patterns: Sequence[str]) -> list[Path]:
    """Returns the files of the first pattern that matches anything in `folder`, sorted."""
    for pattern in patterns:
        found = sorted(p for p in folder.glob(pattern) if p.is_file())
        if found:
            return found
    return []


def _fetch(repo_id: str, patterns: Sequence[str], revision: str | None) -> list[Path]:
    """Returns the local paths of the files matching `patterns`, downloading them if needed."""
    attempts = [True] if hub_offline() else [True, False]
    errors = []
    for local_only in attempts:
        try:
            folder = snapshot_download(repo_id, repo_type="dataset", revision=revision,
                                       allow_patterns=list(patterns),
                                       local_files_only=local_only)
        except Exception as e:  # noqa: BLE001 - any failure here means "not available"
            errors.append(f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
            continue
        files = _matching(Path(folder), patterns)
        if files:
            return files
        errors.append(f"no file matching {list(patterns)} in {folder}")
    where = "the local cache (HF_HUB_OFFLINE is set)" if hub_offline() else "cache or hub"
    raise HubUnavailableError(
        f"dataset {repo_id}@{revision or 'main'} ({', '.join(patterns)}) is not in {where}: "
        f"{'; '.join(errors)}. Connect to the hub (unset HF_HUB_OFFLINE), or use "
        f"source='offline'")


def read_rows(path: Path) -> list[dict[str, Any]]:
    """Returns the rows of a parquet, jsonl, jsonl.gz or json-lines file as dictionaries."""
    name = path.name
    if name.endswith(".parquet"):
        try:
            import pyarrow.parquet as pq
        except ImportError as e:
            raise HubFormatError(f"reading {name} needs pyarrow: pip install pyarrow "
                                 "(or use source='offline')") from e
        return pq.read_table(path).to_pylist()
    if name.endswith((".jsonl", ".jsonl.gz", ".json")):
        opener = gzip.open if name.endswith(".gz") else open
        with opener(path, "rt", encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]
    raise HubFormatError(f"cannot read {path}: expected .parquet or .jsonl")


def hub_rows(repo_id: str, patterns: Sequence[str], *, revision: str | None = None,
             columns: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Returns the rows of one split of a hub dataset, in file order.

    Args:
        repo_id: dataset repository ("openai/gsm8k").
        patterns: glob patterns of the split's files relative to the repository root, tried in
            order; the first that matches is read ("main/test-*.parquet").
        revision: branch, tag or commit; None is the default branch.
        columns: columns every row must have.

    Raises:
        HubUnavailableError: the files are neither cached nor downloadable.
        HubFormatError: the files cannot be read or lack `columns`.
    """
    rows = [row for path in _fetch(repo_id, patterns, revision) for row in read_rows(path)]
    missing = [c for c in columns if rows and c not in rows[0]]
    if missing or not rows:
        raise HubFormatError(
            f"dataset {repo_id}@{revision or 'main'} ({', '.join(patterns)}) "
            f"{'is empty' if not rows else f'lacks columns {missing}'}: the hub copy may have "
            "changed format. Pin an older revision or use source='offline'")
    return rows
