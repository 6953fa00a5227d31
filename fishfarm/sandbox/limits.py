"""The limits of a sandboxed run (`SandboxConfig`) and what the caller sees when one is hit.

`classify` turns how a run ended (exit status, last line of stderr, or the limit the caller
enforced itself) into a `RunResult.kind` and a one-line reason naming the limit.
"""
from __future__ import annotations

import signal
from dataclasses import dataclass
from typing import Literal

SETUP_FAILED = 125  # launcher.SETUP_FAILED: the jail could not be built, the program did not run
MiB = 1 << 20

RunKind = Literal["ok", "error", "timeout", "cpu", "memory", "output", "file_size", "signal",
                  "setup"]


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
    max_output_bytes: int | None = 1 * MiB
    max_file_bytes: int | None = 16 * MiB
    max_open_files: int | None = 64
    scratch_mb: int = 64
    namespaces: bool = True
    drop_privileges: bool = True
    audit_hook: bool = True
    require_isolation: bool = False
    python: str | None = None


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


def classify(config: SandboxConfig, returncode: int, stderr: str, killed_for: str | None
             ) -> tuple[RunKind, str]:
    """Returns the kind of a finished run and a reason naming the limit that stopped it.

    Args:
        config: the limits the run had.
        returncode: the launcher's exit status (``128 + n`` when the program died of signal n).
        stderr: the program's decoded standard error (its last line names exceptions).
        killed_for: "timeout" or "output" when the caller killed the run itself, else None.
    """
    last = next((line for line in reversed(stderr.strip().splitlines()) if line.strip()), "")
    if killed_for == "timeout":
        return "timeout", f"timeout: still running after {config.timeout_s:g} s (wall clock)"
    if killed_for == "output":
        return "output", f"output limit: more than {config.max_output_bytes} bytes"
    if returncode == 0:
        return "ok", ""
    if returncode == SETUP_FAILED and "fishfarm-sandbox: setup failed" in stderr:
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
