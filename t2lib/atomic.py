"""Atomic file writes: a crash or Ctrl-C leaves either the old file or the new one, never half.

Every file a user cares about (experts, SVD caches, results) goes through here: write to a
temporary file in the same folder, flush it to disk, then `os.replace` it over the target.
The file ends with the mode a plain `open(path, "w")` would give it (0666 minus the umask: 0644
under the usual 022), not the 0600 of a temporary file: results and experts are meant to be shared.
"""
from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence


@contextmanager
def atomic_path(path: str | os.PathLike, *, suffix: str = "") -> Iterator[Path]:
    """Yields a temporary path beside `path`; on success it replaces `path` atomically.

    Use it for writers that want a file name (safetensors, matplotlib). If the block raises,
    the temporary file is removed and `path` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix or path.suffix)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # After the writer, not before: some write their own 0600 file (safetensors' save_file does).
        os.chmod(tmp_path, 0o666 & ~current_umask())
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def current_umask() -> int:
    """Returns the process umask without changing it where the OS allows (Linux /proc); elsewhere
    it is set and put back at once."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    umask = os.umask(0o022)
    os.umask(umask)
    return umask


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Writes `text` to `path` atomically (UTF-8)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """Writes `obj` as indented JSON to `path` atomically."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def atomic_write_csv(path: str | os.PathLike, rows: Iterable[Mapping[str, Any]], columns: Sequence[str]) -> None:
    """Writes `rows` as CSV with the header `columns` to `path` atomically. Keys outside `columns`
    are dropped; a row that lacks a column is refused (a misspelled column would otherwise be
    written blank), and the file is left as it was."""
    atomic_write_text(path, csv_text(rows, columns, path=path))


def csv_text(rows: Iterable[Mapping[str, Any]], columns: Sequence[str], *, path: str | os.PathLike = "") -> str:
    """Returns `rows` as CSV text under the header `columns` (the checks of `atomic_write_csv`;
    `path` names the file in its error)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore")
    writer.writeheader()
    for i, row in enumerate(rows):
        missing = [c for c in columns if c not in row]
        if missing:
            raise ValueError(f"row {i} for {path} has no {missing}; it has {sorted(row)}")
        writer.writerow(row)
    return buf.getvalue()


def append_jsonl(path: str | os.PathLike, row: dict) -> None:
    """Appends one JSON line and flushes it to disk (a crash loses at most the line being written)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(row, default=str) + "\n")
        f.flush()
        os.fsync(f.fileno())
