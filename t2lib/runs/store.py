"""Kept results: each finished piece of an experiment (a task's baseline, a (task, strategy) of
Table 2, a row of Table 4) is written once under build_dir()/<kind>/<preset>/ and reused by a rerun.

A piece is found by its name and a key: a hash of everything its result depends on (the preset's
settings, the model's files, the experts' fingerprints, the row's definition) and of the store's
version. A record written by another version, or under other inputs, is not found, so it is
recomputed; `fresh=True` recomputes whatever is kept.

A record is computed under its lock (`t2lib.locks.locked`): a second process that wants the same
record (a notebook beside `make adapt`) waits for the first, then reuses what it kept.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Callable

from t2lib.atomic import atomic_write_json
from t2lib.locks import locked
from t2lib.paths import build_dir


class ResultStore:
    """The kept results of one kind of run for one preset (build_dir()/<kind>/<preset>/).

    Args:
        kind: the run ("baseline", "adapt", "ablations", ...).
        preset: the preset's name.
        version: bump it when a record's form or meaning changes: older records are then recomputed.
    """

    def __init__(self, kind: str, preset: str, *, version: int):
        self.folder = build_dir() / kind / preset
        self.version = version

    def path(self, name: str, inputs: Any) -> Path:
        """Returns the file of the record `name` computed from `inputs` (anything JSON can show)."""
        text = json.dumps([self.version, name, inputs], sort_keys=True, default=str)
        return self.folder / f"{name}-{hashlib.blake2b(text.encode(), digest_size=8).hexdigest()}.json"

    def get(self, name: str, inputs: Any) -> Any | None:
        """Returns the kept result, or None when there is none of this version for these inputs."""
        path = self.path(name, inputs)
        if not path.exists():
            return None
        record = json.loads(path.read_text())
        return record["result"] if record.get("version") == self.version else None

    def put(self, name: str, inputs: Any, result: Any) -> Path:
        """Keeps `result` (atomically); returns its file."""
        path = self.path(name, inputs)
        atomic_write_json(path, {"version": self.version, "name": name, "result": result})
        return path

    def fetch(self, name: str, inputs: Any, compute: Callable[[], Any], *, fresh: bool = False) -> tuple[Any, bool]:
        """Returns (the kept result, True), or (compute() now kept, False) when there is none or `fresh`
        (computed under the record's lock; a result another process kept meanwhile is reused)."""
        kept = None if fresh else self.get(name, inputs)
        if kept is not None:
            return kept, True
        # One process computes a record at a time: another that wants it waits, then reuses it.
        self.folder.mkdir(parents=True, exist_ok=True)
        with locked(self.path(name, inputs)):
            kept = None if fresh else self.get(name, inputs)
            if kept is not None:
                return kept, True
            result = compute()
            self.put(name, inputs, result)
        return result, False
