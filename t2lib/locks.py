"""Locks between processes that share a folder: a notebook in JupyterLab beside `make experts` in
a terminal, or the same command started twice.

Two kinds, both OS locks through `filelock` (released by the kernel when the process dies, so a
killed run never blocks the next one):

- `owning(folder)`: a resumable run (training, an ablation row) owns its run folder. A second
  run on a held folder stops at once with `FolderBusyError`, naming the holder's pid and
  command; it touches none of the first run's files.
- `locked(path)`: a read-modify-write of a shared file (a results table, a kept result, an
  expert file pair) waits for the other writer, then reads what it wrote.

Both are reentrant within a thread: a command that holds its run folders from the start (before
the model loads) can call a trainer that takes the same folder again.
"""
from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Iterator, Sequence

from filelock import FileLock, Timeout

from t2lib.atomic import atomic_write_json

LOCK_NAME = ".lock"          # the OS lock of a run folder
OWNER_NAME = ".owner.json"   # who holds it: pid, command, host, since (read by the second run's message)
WAIT_NOTICE_S = 10.0         # a waiting writer says what it waits for after this long, then every minute

_held: dict[tuple[int, Path], list] = {}  # (thread, lock file) -> [FileLock, depth]: what this process holds
_held_guard = threading.Lock()


class FolderBusyError(RuntimeError):
    """Another process holds a run folder."""


def owner(folder: str | os.PathLike) -> dict | None:
    """Returns what the process that holds (or last held) `folder` wrote of itself, or None."""
    try:
        return json.loads((Path(folder) / OWNER_NAME).read_text())
    except (OSError, ValueError):
        return None


def describe_owner(info: dict | None) -> str:
    """Returns "pid 123 (training math: t2lib train ..., since 2026-12-07 10:04:05)" for an `owner` record."""
    if not info:
        return "another process (it has not written its name yet)"
    host = "" if info.get("host") == socket.gethostname() else f" on {info.get('host')}"
    return (f"pid {info.get('pid')}{host} ({info.get('what', 'a run')}: {info.get('command', '?')}, "
            f"since {info.get('since', '?')})")


@contextmanager
def owning(folder: str | os.PathLike, *, what: str = "a run") -> Iterator[Path]:
    """Holds `folder` for this process while the block runs; yields the folder.

    Raises:
        FolderBusyError: at once when another process holds it, naming that process and the fix.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lock_path = (folder / LOCK_NAME).resolve()
    if not _enter(lock_path, timeout=0):
        info = owner(folder)
        for _ in range(20):  # the holder may have taken the lock an instant ago: give it 2 s to say who it is
            if info is not None and _alive(info):
                break
            time.sleep(0.1)
            info = owner(folder)
        raise FolderBusyError(
            f"{folder} is held by {describe_owner(info)}; nothing in it was touched. Wait "
            "for that run to finish (or stop it), or give this one another folder (--run-dir)")
    try:
        if _depth(lock_path) == 1:
            atomic_write_json(folder / OWNER_NAME, {
                "pid": os.getpid(), "host": socket.gethostname(), "what": what,
                "command": _command(),
                "since": time.strftime("%Y-%m-%d %H:%M:%S")})
        yield folder
    finally:
        if _depth(lock_path) == 1:
            (folder / OWNER_NAME).unlink(missing_ok=True)
        _exit(lock_path)


@contextmanager
def owning_all(folders: Sequence[str | os.PathLike], *, what: str = "a run") -> Iterator[list[Path]]:
    """Holds every folder of `folders` (`owning`) while the block runs: a command takes the run
    folders of all its work at its start, before it loads a model; yields them."""
    with ExitStack() as stack:
        yield [stack.enter_context(owning(f, what=what)) for f in folders]


def check_free(folder: str | os.PathLike, *, what: str = "a run") -> None:
    """Raises FolderBusyError when another process holds `folder` (a check before long work, such
    as loading a model; the run itself still takes the folder with `owning`)."""
    if Path(folder).is_dir():
        with owning(folder, what=what):
            pass


@contextmanager
def locked(path: str | os.PathLike) -> Iterator[Path]:
    """Holds the lock of the shared file `path` (a sibling `.<name>.lock`) while the block runs,
    waiting for another process that holds it and saying so; yields `path`.

    A folder that does not exist holds nothing to read, and one this process cannot write to (a
    read-only install) cannot be written by it either: there the block runs unlocked (a writer
    makes the folder first).
    """
    path = Path(path)
    if not os.access(path.parent, os.W_OK):
        yield path
        return
    lock_path = (path.parent / f".{path.name}.lock").resolve()
    waited = 0.0
    while not _enter(lock_path, timeout=WAIT_NOTICE_S if waited == 0 else 60.0):
        waited += WAIT_NOTICE_S if waited == 0 else 60.0
        print(f"waiting for {path}: another process is writing it ({waited:.0f} s so far)", flush=True)
    try:
        yield path
    finally:
        _exit(lock_path)


def _command() -> str:
    """Returns this process's command line as typed ("python -m t2lib train ..."; a kernel's own)."""
    argv = list(getattr(sys, "orig_argv", None) or sys.argv or ["python"])
    return " ".join([Path(argv[0]).name, *argv[1:]])


def _alive(info: dict) -> bool:
    """Whether the process an `owner` record names still runs (a record on another host counts as alive)."""
    if info.get("host") != socket.gethostname():
        return True
    try:
        os.kill(int(info["pid"]), 0)
    except (KeyError, ValueError, ProcessLookupError):
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def _enter(lock_path: Path, *, timeout: float) -> bool:
    """Takes `lock_path` (or deepens this process's hold on it); returns False on timeout."""
    key = (threading.get_ident(), lock_path)
    with _held_guard:
        entry = _held.get(key)
        if entry is not None and entry[0].is_locked:
            entry[1] += 1
            return True
    lock = FileLock(lock_path, thread_local=False)
    try:
        lock.acquire(timeout=timeout)
    except Timeout:
        return False
    with _held_guard:
        _held[key] = [lock, 1]
    return True


def _depth(lock_path: Path) -> int:
    key = (threading.get_ident(), lock_path)
    with _held_guard:
        return _held[key][1] if key in _held else 0


def _exit(lock_path: Path) -> None:
    key = (threading.get_ident(), lock_path)
    with _held_guard:
        entry = _held[key]
        entry[1] -= 1
        if entry[1] > 0:
            return
        del _held[key]
    entry[0].release()
