"""The caller's side of the sandbox: probes the layers, starts the launcher and supervises it.

`Sandbox.run` writes the program to a scratch directory, starts ``launcher.py`` (by file path,
as ``python -I -S -B launcher.py '<json>'``, in a new session with an empty environment), reads
its output under a byte cap until the wall-clock deadline, then kills the launcher's process
group, which takes the whole sandbox with it, and removes the scratch directory.
"""
from __future__ import annotations

import functools
import json
import os
import secrets
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from fishfarm.sandbox.limits import MiB, RunResult, SandboxConfig, classify

_HERE = Path(__file__).resolve().parent
_LAUNCHER = _HERE / "launcher.py"  # run by file path: it must not import fishfarm
_RUNNER = _HERE / "runner.py"  # passed as source text to ``python -c`` inside the jail
_UID_BASE, _UID_SPAN = 1_000_000_000, 100_000_000  # far above any real user or subuid range


class SandboxUnavailableError(RuntimeError):
    """Raised when `SandboxConfig.require_isolation` is set and a layer is missing."""


@dataclass(frozen=True)
class SandboxLayers:
    """Which isolation layers this machine offers to the current user.

    Args:
        namespaces: new net/pid/mount/ipc/uts namespaces (and a user namespace when not root) work.
        root: the caller is root, so the program can be moved to an unprivileged uid.
        uid_can_reach_python: that uid can execute the interpreter without namespaces (it cannot
            when Python lives under a 0700 home such as /root/.pyenv).
        notes: why a layer is missing.
    """
    namespaces: bool
    root: bool
    uid_can_reach_python: bool
    notes: tuple[str, ...] = ()


def _interpreter(config: SandboxConfig) -> str:
    return config.python or os.path.realpath(sys.executable)


@functools.lru_cache(maxsize=None)
def _readonly_paths(python: str) -> tuple[str, ...]:
    """Host paths the namespace root exposes read-only: system libraries and the interpreter."""
    out = subprocess.run([python, "-I", "-S", "-c", "import sys; print(sys.prefix)"],
                         capture_output=True, text=True, env={}, check=True, timeout=30)
    prefix = os.path.realpath(out.stdout.strip())
    paths = ["/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32",
             "/etc/ld.so.cache", "/etc/localtime", prefix, os.path.dirname(python)]
    return tuple(p for p in paths if os.path.lexists(p))


def _traversable_by_others(path: str) -> bool:
    """Whether a non-owner uid can execute `path` (every parent directory has o+x)."""
    return all(os.stat(p).st_mode & 0o001 for p in Path(path).parents) \
        and os.stat(path).st_mode & 0o005 == 0o005


@functools.lru_cache(maxsize=None)
def detect_layers(python: str | None = None) -> SandboxLayers:
    """Returns the isolation layers available here, probing namespaces once per interpreter."""
    python = python or _interpreter(SandboxConfig())
    notes = []
    scratch = tempfile.mkdtemp(prefix="fishfarm-sandbox-probe-")
    try:
        os.mkdir(os.path.join(scratch, "root"))
        Path(scratch, "program.py").write_text("")
        cfg = _launch_config(SandboxConfig(), python=python, scratch=scratch, mode="probe",
                             namespaces=True, uid=_UID_BASE)
        proc = subprocess.run([python, "-I", "-S", "-B", str(_LAUNCHER), json.dumps(cfg)],
                              capture_output=True, text=True, env={}, cwd=scratch, timeout=30)
        namespaces = proc.returncode == 0 and proc.stdout.strip() == "ok"
        if not namespaces:
            notes.append(f"namespaces unavailable: {proc.stderr.strip()[-300:]}")
    except (OSError, subprocess.SubprocessError) as exc:
        namespaces = False
        notes.append(f"namespaces unavailable: {exc}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    reachable = _traversable_by_others(python)
    if not reachable:
        notes.append(f"without namespaces an unprivileged uid cannot execute {python} (a parent "
                     "directory lacks o+x); install Python elsewhere to get the privilege drop")
    return SandboxLayers(namespaces=namespaces, root=os.geteuid() == 0,
                         uid_can_reach_python=reachable, notes=tuple(notes))


def _launch_config(config: SandboxConfig, *, python: str, scratch: str, mode: str,
                   namespaces: bool, uid: int, drop: bool = True) -> dict:
    workdir = os.path.join(scratch, "work")
    return {
        "mode": mode, "python": python, "scratch": scratch, "workdir": workdir,
        "program": os.path.join(scratch, "program.py"), "uid": uid,
        "namespaces": namespaces, "drop_privileges": drop, "audit_hook": config.audit_hook,
        "readonly_paths": list(_readonly_paths(python)) if namespaces else [],
        "runner_source": _RUNNER.read_text(), "scratch_mb": config.scratch_mb,
        "cpu_time_s": config.cpu_time_s,
        "memory_bytes": None if config.memory_mb is None else config.memory_mb * MiB,
        "max_processes": config.max_processes, "max_file_bytes": config.max_file_bytes,
        "max_open_files": config.max_open_files,
    }


_warned: set[str] = set()
_KILL_GRACE_S = 2.0


def _drain_until_closed(fds: list[int], deadline: float) -> None:
    """Waits (bounded) until every holder of the output pipes has exited, discarding output.

    After a kill the kernel tears the pid namespace down asynchronously; the pipes reach EOF
    once its last process is gone, so the caller returns only when nothing is left running.
    """
    with selectors.DefaultSelector() as sel:
        for fd in fds:
            sel.register(fd, selectors.EVENT_READ)
        while sel.get_map() and time.monotonic() < deadline:
            for key, _ in sel.select(timeout=max(0.0, deadline - time.monotonic())):
                if not os.read(key.fd, 65536):
                    sel.unregister(key.fd)


class Sandbox:
    """Runs Python programs in isolated, resource-limited processes (see `fishfarm.sandbox`).

    Args:
        config: limits and layers; the defaults suit HumanEval/MBPP-style tests.
    """

    def __init__(self, config: SandboxConfig = SandboxConfig()):
        self.config = config
        self.python = _interpreter(config)
        if not (os.path.isfile(self.python) and os.access(self.python, os.X_OK)):
            raise ValueError(f"SandboxConfig.python={self.python!r} is not an executable file; "
                             "point it to a Python 3 interpreter")
        self.layers = detect_layers(self.python)
        layers = self.layers
        self._namespaces = config.namespaces and layers.namespaces
        self._drop = (config.drop_privileges and layers.root
                      and (self._namespaces or layers.uid_can_reach_python))
        missing = []
        if config.namespaces and not layers.namespaces:
            missing.append("Linux namespaces (network, filesystem and process isolation)")
        if config.drop_privileges and layers.root and not self._drop:
            missing.append("the privilege drop")
        if missing:
            message = (f"fishfarm sandbox: {' and '.join(missing)} "
                       f"{'are' if len(missing) > 1 else 'is'} unavailable here, so generated "
                       f"code runs with fewer protections ({'; '.join(layers.notes)}). "
                       "See fishfarm/sandbox/SANDBOX.md for what remains protected.")
            if config.require_isolation:
                raise SandboxUnavailableError(message)
            if message not in _warned:
                _warned.add(message)
                warnings.warn(message, RuntimeWarning, stacklevel=2)

    def run(self, program: str) -> RunResult:
        """Returns the outcome of running `program` (Python source) as ``__main__``."""
        start = time.monotonic()
        scratch = tempfile.mkdtemp(prefix="fishfarm-sandbox-")
        try:
            os.mkdir(os.path.join(scratch, "root"))  # mount point of the namespace root
            os.mkdir(os.path.join(scratch, "work"), 0o700)
            # Lone surrogates in model output must not crash the caller.
            Path(scratch, "program.py").write_bytes(program.encode("utf-8", "replace"))
            cfg = _launch_config(self.config, python=self.python, scratch=scratch, mode="run",
                                 namespaces=self._namespaces,
                                 uid=_UID_BASE + secrets.randbelow(_UID_SPAN),
                                 drop=self._drop)
            return self._supervise(cfg, scratch, start)
        except OSError as exc:  # e.g. fork failed on the host: a failed run, not a crash
            return RunResult(False, "setup", f"setup: could not start the sandbox: {exc}", None,
                             "", "", time.monotonic() - start, scratch)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def run_many(self, programs: Sequence[str], *, max_workers: int | None = None
                 ) -> list[RunResult]:
        """Returns the outcomes of `programs`, run in parallel by a thread pool (order kept)."""
        workers = max_workers or os.cpu_count() or 1
        with ThreadPoolExecutor(max_workers=workers) as pool:
            return list(pool.map(self.run, programs))

    def _supervise(self, cfg: dict, scratch: str, start: float) -> RunResult:
        config = self.config
        proc = subprocess.Popen(
            [self.python, "-I", "-S", "-B", str(_LAUNCHER), json.dumps(cfg)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env={}, cwd=scratch, start_new_session=True, close_fds=True)
        out_fd, err_fd = proc.stdout.fileno(), proc.stderr.fileno()
        chunks = {out_fd: bytearray(), err_fd: bytearray()}
        deadline = start + config.timeout_s
        cap = config.max_output_bytes
        killed_for = None
        with selectors.DefaultSelector() as sel:
            for fd in chunks:
                sel.register(fd, selectors.EVENT_READ)
            while sel.get_map() and killed_for is None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    killed_for = "timeout"
                    break
                for key, _ in sel.select(timeout=remaining):
                    data = os.read(key.fd, 65536)
                    if not data:
                        sel.unregister(key.fd)
                        continue
                    chunks[key.fd] += data
                    if cap is not None and sum(map(len, chunks.values())) > cap:
                        killed_for = "output"
                        break
        if killed_for is None:  # pipes closed: the launcher is exiting; wait without reaping
            os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
        try:  # the launcher's pid is still reserved (alive or zombie), so its group id is safe
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        returncode = proc.wait()
        if killed_for is not None:
            _drain_until_closed(list(chunks), time.monotonic() + _KILL_GRACE_S)
        out, err = bytes(chunks[out_fd]), bytes(chunks[err_fd])
        proc.stdout.close()
        proc.stderr.close()
        if cap is not None:
            out, err = out[:cap], err[:max(0, cap - len(out))]
        stdout = out.decode("utf-8", "replace")
        stderr = err.decode("utf-8", "replace")
        kind, reason = classify(config, returncode, stderr, killed_for)
        return RunResult(kind == "ok", kind, reason, None if killed_for else returncode,
                         stdout, stderr, time.monotonic() - start, scratch)
