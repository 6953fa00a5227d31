"""The last stage of the sandbox: installs a Python audit hook, then runs the untrusted program.

The launcher execs ``python -I -S -B -c <this file's text> PROGRAM_PATH POLICY_JSON`` after the
resource limits, the uid drop and (when available) the namespaces are in place. The audit hook is a
second, in-process layer: it refuses sockets, new processes, signals to other processes, ctypes,
and file access outside the program's working directory and the standard library. It is
bypassable by a determined program (that is why the OS layers come first), but it turns the
common accidents and naive attacks into a clear ``PermissionError``.

The program runs as ``__main__`` with its exceptions and exit status passed through unchanged.
"""
import builtins
import json
import os
import sys

_BLOCKED = ("socket.", "subprocess.", "os.system", "os.exec", "os.posix_spawn", "os.spawn",
            "os.fork", "os.forkpty", "pty.", "ctypes.", "resource.setrlimit", "webbrowser.",
            "http.", "ftplib.", "smtplib.", "urllib.", "telnetlib.", "poplib.", "imaplib.",
            "nntplib.", "ensurepip.")
_WRITE_EVENTS = frozenset({"os.remove", "os.rmdir", "os.rename", "os.mkdir", "os.chmod",
                           "os.chown", "os.link", "os.symlink", "os.truncate", "os.utime",
                           "os.chflags", "os.setxattr", "os.removexattr", "shutil.rmtree",
                           "shutil.copyfile", "shutil.copytree", "shutil.move", "os.mkfifo",
                           "os.mknod", "tempfile.mkdtemp", "tempfile.mkstemp"})
_READ_EVENTS = frozenset({"os.listdir", "os.scandir", "os.walk", "os.fwalk", "glob.glob",
                          "pathlib.Path.glob", "pathlib.Path.rglob", "os.getxattr",
                          "os.listxattr", "shutil.copystat", "shutil.copymode"})
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


def _install_hook(workdir: str) -> None:
    stdlib = tuple({os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)})
    read_roots = (workdir, "/dev/null", "/dev/zero", "/dev/urandom", "/dev/random",
                  "/proc/self", "/etc/localtime", "/usr/share/zoneinfo") + stdlib
    write_roots = (workdir, "/dev/null")
    me = os.getpid()
    realpath, fsdecode = os.path.realpath, os.fsdecode

    def inside(path, roots) -> bool:
        if isinstance(path, int):  # an already-open descriptor
            return True
        full = realpath(fsdecode(path))
        return any(full == r or full.startswith(r.rstrip("/") + "/") for r in roots)

    def hook(event: str, args: tuple) -> None:
        if event == "open":
            path, mode, flags = args
            writing = (mode is not None and any(c in mode for c in "wax+")) or \
                (mode is None and flags & _WRITE_FLAGS)
            if path is not None and not inside(path, write_roots if writing else read_roots):
                raise PermissionError(f"sandbox: open({path!r}) is outside the sandbox")
        elif event in _WRITE_EVENTS:
            for path in args[:2]:
                if isinstance(path, (str, bytes, os.PathLike)) and not inside(path, write_roots):
                    raise PermissionError(f"sandbox: {event}({path!r}) is outside the sandbox")
        elif event in _READ_EVENTS:
            path = args[0] if args else "."
            if isinstance(path, (str, bytes, os.PathLike)) and not inside(path, read_roots):
                raise PermissionError(f"sandbox: {event}({path!r}) is outside the sandbox")
        elif event in ("os.kill", "os.killpg"):
            if args[0] != me:
                raise PermissionError(f"sandbox: {event}{args} to another process")
        elif event.startswith(_BLOCKED):
            raise PermissionError(f"sandbox: {event} is not allowed")

    sys.addaudithook(hook)


def main() -> None:
    program_path, policy = sys.argv[1], json.loads(sys.argv[2])
    with open(program_path, encoding="utf-8", errors="replace") as f:
        source = f.read()
    code = compile(source, program_path, "exec")
    sys.argv = [program_path]
    if policy["audit_hook"]:
        _install_hook(os.path.realpath(policy["workdir"]))
    namespace = {"__name__": "__main__", "__file__": program_path, "__builtins__": builtins}
    exec(code, namespace)


if __name__ == "__main__":
    main()
