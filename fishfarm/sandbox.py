"""Runs untrusted Python programs (model-generated code) in a sandboxed process.

Every program runs in its own process tree with a wall-clock limit, a CPU-time limit, an address
space limit, a process cap, an output cap, a file-size cap and an open-file cap, in a scratch
directory that is removed afterwards, with an empty environment (no secrets), stdin from
/dev/null, and only the standard library (``python -I -S``). A hostile or broken program gives a
failed `RunResult` with a reason; `Sandbox.run` never raises because of what the program did.

Layers, from strongest to weakest (`detect_layers` says which this machine offers):

1. Linux namespaces (net, pid, mount, ipc, uts; plus a user namespace when not root): no network
   at all (only a down loopback), a pid namespace whose init kills every leftover process, and a
   private root holding only read-only /usr, /lib*, the Python installation, a few /dev nodes and
   a size-capped tmpfs ``/sandbox`` as working directory. The host's files (home directories, the
   repository, /tmp) do not exist in it.
2. Privilege drop (when started as root): the program runs as a fresh uid (never a real user's
   and not shared with other sandboxes), with no_new_privs, so RLIMIT_NPROC binds, it cannot
   signal or trace the caller, and it cannot read files that are not world-readable.
3. A Python audit hook (`fishfarm.sandbox_runner`): refuses sockets, subprocesses, fork, ctypes,
   signals to other processes and file access outside the working directory and stdlib.
   Bypassable on its own; useful as a second line and for clear error messages.
4. Resource limits (always): see `SandboxConfig`.

When a layer is missing the sandbox warns once (RuntimeWarning) and goes on with the others;
``SandboxConfig(require_isolation=True)`` makes it raise `SandboxUnavailableError` instead.
fishfarm/SANDBOX.md lists what is and is not protected.
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
from typing import Literal, Sequence

_HERE = Path(__file__).resolve().parent
_LAUNCHER = _HERE / "sandbox_launcher.py"
_RUNNER = _HERE / "sandbox_runner.py"
_SETUP_FAILED = 125  # sandbox_launcher.SETUP_FAILED
_UID_BASE, _UID_SPAN = 1_000_000_000, 100_000_000  # far above any real user or subuid range
_MiB = 1 << 20

RunKind = Literal["ok", "error", "timeout", "cpu", "memory", "output", "file_size", "signal",
                  "setup"]


class SandboxUnavailableError(RuntimeError):
    """Raised when `SandboxConfig.require_isolation` is set and a layer is missing."""


@dataclass(frozen=True)
class SandboxConfig:
    """Limits and layers of one sandbox. ``None`` turns a limit off (tests do, to show it works).

    Args:
        timeout_s: wall-clock limit of the whole run in seconds (sandbox start-up ~0.05 s included).
        cpu_time_s: CPU-time limit per process in whole seconds (SIGXCPU, then SIGKILL 1 s later).
        memory_mb: address-space limit per process (RLIMIT_AS) in MiB.
        max_processes: processes the sandbox uid may have (RLIMIT_NPROC); binds only when the
            privilege drop or a user namespace is active.
        max_output_bytes: stdout + stderr bytes kept; more kills the program.
        max_file_bytes: largest file the program may write (RLIMIT_FSIZE).
        max_open_files: open file descriptors per process (RLIMIT_NOFILE).
        scratch_mb: size of the tmpfs working directory (namespace mode only).
        namespaces: use Linux namespaces when available.
        drop_privileges: run as a fresh unprivileged uid when started as root.
        audit_hook: install the in-process audit hook.
        require_isolation: raise instead of warning when namespaces or the privilege drop are
            requested but unavailable.
        python: interpreter for the program; default: the real binary behind `sys.executable`
            (run with ``-I -S``: standard library only).
    """
    timeout_s: float = 10.0
    cpu_time_s: int | None = 10
    memory_mb: int | None = 1024
    max_processes: int | None = 16
    max_output_bytes: int | None = 1 * _MiB
    max_file_bytes: int | None = 16 * _MiB
    max_open_files: int | None = 64
    scratch_mb: int = 64
    namespaces: bool = True
    drop_privileges: bool = True
    audit_hook: bool = True
    require_isolation: bool = False
    python: str | None = None


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


@dataclass(frozen=True)
class RunResult:
    """Outcome of one sandboxed run.

    Args:
        ok: the program exited with status 0 within every limit.
        kind: "ok", or why not: "error" (non-zero exit, e.g. an exception), "timeout", "cpu",
            "memory", "output", "file_size", "signal" (killed otherwise) or "setup" (the sandbox
            could not be built; the program did not run).
        reason: one line for humans, e.g. "timeout: still running after 2 s (wall clock)".
        returncode: exit status (``128 + n`` when killed by signal n inside the sandbox).
        stdout: decoded standard output (at most `max_output_bytes` bytes).
        stderr: decoded standard error.
        wall_s: seconds from start to the end of clean-up.
        scratch_dir: the host scratch directory (already removed).
    """
    ok: bool
    kind: RunKind
    reason: str
    returncode: int | None
    stdout: str
    stderr: str
    wall_s: float
    scratch_dir: str


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
        "memory_bytes": None if config.memory_mb is None else config.memory_mb * _MiB,
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
    """Runs Python programs in isolated, resource-limited processes (see module docstring).

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
                       "See fishfarm/SANDBOX.md for what remains protected.")
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
        kind, reason = self._classify(returncode, stderr, killed_for)
        return RunResult(kind == "ok", kind, reason, None if killed_for else returncode,
                         stdout, stderr, time.monotonic() - start, scratch)

    def _classify(self, returncode: int, stderr: str, killed_for: str | None
                  ) -> tuple[RunKind, str]:
        config = self.config
        last = next((line for line in reversed(stderr.strip().splitlines()) if line.strip()), "")
        if killed_for == "timeout":
            return "timeout", f"timeout: still running after {config.timeout_s:g} s (wall clock)"
        if killed_for == "output":
            return "output", f"output limit: more than {config.max_output_bytes} bytes"
        if returncode == 0:
            return "ok", ""
        if returncode == _SETUP_FAILED and "fishfarm-sandbox: setup failed" in stderr:
            return "setup", f"setup: {last}"
        if "MemoryError" in last or last.startswith("MemoryError"):
            return "memory", f"memory limit: {last} (limit {config.memory_mb} MiB)"
        if returncode > 128 or returncode < 0:
            sig = returncode - 128 if returncode > 128 else -returncode
            name = signal.Signals(sig).name if sig in signal.valid_signals() else f"signal {sig}"
            if sig == signal.SIGXCPU:
                return "cpu", f"cpu time limit: killed by SIGXCPU after {config.cpu_time_s} s"
            if sig == signal.SIGXFSZ:
                return "file_size", (f"file size limit: killed by SIGXFSZ "
                                     f"({config.max_file_bytes} B)")
            if sig == signal.SIGKILL:
                return "signal", ("killed by SIGKILL (CPU hard limit, out of memory, or the "
                                  "program killed itself)")
            return "signal", f"killed by {name}"
        return "error", f"exit status {returncode}: {last[-300:]}"
