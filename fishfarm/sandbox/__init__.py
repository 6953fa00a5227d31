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
3. A Python audit hook (`runner`): refuses sockets, subprocesses, fork, ctypes,
   signals to other processes and file access outside the working directory and stdlib.
   Bypassable on its own; useful as a second line and for clear error messages.
4. Resource limits (always): see `SandboxConfig`.

When a layer is missing the sandbox warns once (RuntimeWarning) and goes on with the others;
``SandboxConfig(require_isolation=True)`` makes it raise `SandboxUnavailableError` instead.
fishfarm/sandbox/SANDBOX.md lists what is and is not protected.

Modules: `limits` (`SandboxConfig`, `RunResult`, which limit ended a run) and `supervisor`
(`Sandbox`, `detect_layers`) are the caller's side; `launcher` (builds the jail, started by file
path) and `runner` (installs the audit hook, runs the program) are the process side: standard
library only, they never import fishfarm.
"""
from fishfarm.sandbox.limits import RunKind, RunResult, SandboxConfig
from fishfarm.sandbox.supervisor import (Sandbox, SandboxLayers, SandboxUnavailableError,
                                         detect_layers)

__all__ = [
    "RunKind", "RunResult", "Sandbox", "SandboxConfig", "SandboxLayers", "SandboxUnavailableError",
    "detect_layers",
]
