"""Reads the rows of a user's data: a local JSONL, CSV or Parquet file, or one split of a hub dataset.

Every row comes with where it is (``file.jsonl:12``: the line of a JSONL or CSV file, the row of a
Parquet file, the file of a hub split), so an error about a row can name it.

    rows = read_rows_located("examples/two_skills/add_word.jsonl")
    rows[0].where, rows[0].row["question"]
"""
from __future__ import annotations

import csv
import gzip
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fishfarm.data.hub import hub_rows

FORMATS = (".jsonl", ".jsonl.gz", ".csv", ".parquet")


class DataFileError(ValueError):
    """Raised when a data file cannot be read: missing, unknown format, or a malformed row."""


@dataclass(frozen=True)
class LocatedRow:
    """One row of a data file and where it is ("file.jsonl:12", "file.parquet row 3")."""
    row: dict[str, Any]
    where: str


def file_sha256(path: str | Path) -> str:
    """Returns the sha256 of a file's bytes (hex)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _jsonl(path: Path) -> list[LocatedRow]:
    opener = gzip.open if path.name.endswith(".gz") else open
    out = []
    with opener(path, "rt", encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataFileError(f"{path}:{number}: not a JSON object ({e.msg}); write one JSON object "
                                    "per line") from None
            if not isinstance(row, dict):
                raise DataFileError(f"{path}:{number}: a {type(row).__name__}, not a JSON object; write one "
                                    "object per line, e.g. {\"question\": ..., \"answer\": ...}")
            out.append(LocatedRow(row, f"{path}:{number}"))
    return out


def _csv(path: Path) -> list[LocatedRow]:
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        return [LocatedRow(dict(row), f"{path}:{reader.line_num}") for row in reader]


def _parquet(path: Path) -> list[LocatedRow]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise DataFileError(f"reading {path} needs pyarrow: pip install pyarrow (or write the rows as .jsonl)") from None

    return [LocatedRow(row, f"{path} row {i}") for i, row in enumerate(pq.read_table(path).to_pylist())]


def read_rows_located(path: str | Path) -> list[LocatedRow]:
    """Returns the rows of a .jsonl(.gz), .csv or .parquet file, each with its line or row.

    Raises:
        DataFileError: the file is missing, of another format, or holds a line that is not a JSON object.
    """
    path = Path(path)
    if not path.is_file():
        raise DataFileError(f"data file {path} does not exist; write it, or fix the path (relative paths are "
                            "read from the suite file's folder)")
    if path.name.endswith((".jsonl", ".jsonl.gz")):
        return _jsonl(path)
    if path.suffix == ".csv":
        return _csv(path)
    if path.suffix == ".parquet":
        return _parquet(path)
    raise DataFileError(f"data file {path}: unknown format; use one of {', '.join(FORMATS)}")


def hub_split_rows(dataset: str, split: str, *, config: str | None = None,
                   revision: str | None = None) -> list[LocatedRow]:
    """Returns the rows of one split of a hub dataset (its parquet or jsonl files), in file order.

    Args:
        dataset: the dataset's hub id ("openai/gsm8k").
        split: the split's name on the hub ("train", "test").
        config: its configuration (subset) name, if it has several ("main").
        revision: branch, tag or commit.

    Raises:
        HubUnavailableError: the hub does not answer and the files are not cached.
    """
    folders = [f"{config}/", f"data/{config}/", ""] if config else ["data/", ""]
    patterns = [f"{folder}{split}-*.parquet" for folder in folders] + [f"{folder}{split}/*.parquet" for folder in folders]
    patterns += [f"{folder}{split}*.jsonl" for folder in folders]
    where = f"hub {dataset}{'/' + config if config else ''} split {split}"
    return [LocatedRow(row, f"{where} row {i}")
            for i, row in enumerate(hub_rows(dataset, patterns, revision=revision))]
