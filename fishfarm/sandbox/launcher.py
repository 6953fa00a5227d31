"""The sandbox's process side: builds the jail, then runs one untrusted Python program in it.

`fishfarm.sandbox.supervisor` starts this file by path as ``python -I -S -B launcher.py '<json>'``
with an empty environment, in a new session. It uses the standard library only (it runs with no
site-packages) and never imports fishfarm. Read fishfarm/sandbox/SANDBOX.md for the threat model.

Three processes take part:

- the *launcher* (this script, started by the caller): with namespaces it calls ``unshare`` and
  forks; it waits and exits with the status of the program (``128 + signal`` if it was killed);
- the *init* (pid 1 of the new pid namespace): mounts the minimal root, pivots into it, forks the
  program and reaps; when it exits the kernel kills everything left in the namespace. It dies with
  the launcher (parent-death signal), so killing the launcher's process group tears it all down;
- the *program*: sets resource limits, drops to the sandbox uid, sets no_new_privs and execs a
  fresh ``python -I -S -B -c <runner.py>``, which installs the audit hook and runs the code.

``mode == "probe"`` only checks that the namespace and mount steps work and prints ``ok``.
"""
import ctypes
import json
import os
import resource
import select
import signal
import stat
import sys

CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x00020000, 0x04000000, 0x08000000
CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x10000000, 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
MNT_DETACH = 2
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_SET_NO_NEW_PRIVS = 1, 4, 38
# statvfs flag -> mount flag; a remount inside a user namespace must keep the locked flags.
_STATVFS_TO_MS = {1: MS_RDONLY, 2: MS_NOSUID, 4: MS_NODEV, 8: MS_NOEXEC,
                  1024: 1024, 2048: 2048, 4096: 1 << 21}
PIVOT_ROOT_SYSCALL = {"x86_64": 155, "aarch64": 41, "riscv64": 41, "ppc64le": 203, "s390x": 217}
SETUP_FAILED = 125  # exit status of the launcher when the jail could not be built
JAIL_DIR = "/sandbox"

_libc = ctypes.CDLL(None, use_errno=True)


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount(src, target, fstype, flags, data=None) -> None:
    enc = lambda s: None if s is None else s.encode()  # noqa: E731
    _check(_libc.mount(enc(src), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)),
           f"mount {target}")


def _prctl(option: int, arg: int) -> None:
    _check(_libc.prctl(option, ctypes.c_ulong(arg), 0, 0, 0), f"prctl {option}")


def _bind_readonly(src: str, target: str) -> None:
    _mount(src, target, None, MS_BIND | MS_REC)
    kept = sum(ms for st, ms in _STATVFS_TO_MS.items() if os.statvfs(target).f_flag & st)
    _mount(None, target, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | kept)


def _add_path(new_root: str, path: str) -> None:
    """Makes `path` of the host visible read-only at the same place under `new_root`."""
    dest = new_root + path
    if os.path.lexists(dest):
        return
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    if os.path.islink(path):  # merged-/usr systems: /bin -> usr/bin
        os.symlink(os.readlink(path), dest)
    elif os.path.isdir(path):
        os.makedirs(dest)
        _bind_readonly(path, dest)
    elif os.path.exists(path):
        open(dest, "w").close()
        if stat.S_ISCHR(os.stat(path).st_mode):  # /dev/null & co. stay writable
            _mount(path, dest, None, MS_BIND)
        else:
            _bind_readonly(path, dest)


def _build_root(cfg: dict) -> None:
    """Mounts a minimal read-only root in the scratch dir, pivots into it and hides the host's."""
    _mount(None, "/", None, MS_REC | MS_PRIVATE)  # nothing we mount may propagate to the host
    new_root = os.path.join(cfg["scratch"], "root")
    _mount("tmpfs", new_root, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=0755")
    for path in cfg["readonly_paths"]:
        _add_path(new_root, path)
    for dev in ("null", "zero", "random", "urandom"):
        _add_path(new_root, "/dev/" + dev)
    os.makedirs(new_root + "/proc")
    try:  # needs a fully visible /proc in user namespaces; programs rarely need it
        _mount("proc", new_root + "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    except OSError:
        pass
    os.makedirs(new_root + JAIL_DIR)
    uid = cfg["uid"]
    _mount("tmpfs", new_root + JAIL_DIR, "tmpfs", MS_NOSUID | MS_NODEV,
           f"size={cfg['scratch_mb']}m,mode=0700,uid={uid},gid={uid}")
    os.symlink(JAIL_DIR, new_root + "/tmp")
    os.makedirs(new_root + "/.old_root")
    syscall = PIVOT_ROOT_SYSCALL[os.uname().machine]
    _check(_libc.syscall(syscall, new_root.encode(), (new_root + "/.old_root").encode()),
           "pivot_root")
    os.chdir("/")
    _check(_libc.umount2(b"/.old_root", MNT_DETACH), "umount old root")
    os.rmdir("/.old_root")
    _mount(None, "/", None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)


def _enter_namespaces(cfg: dict) -> None:
    flags = CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS
    user_ns = os.geteuid() != 0
    if user_ns:  # unprivileged: a user namespace gives us the right to build the others
        flags |= CLONE_NEWUSER
    outer_uid, outer_gid = os.geteuid(), os.getegid()
    _check(_libc.unshare(flags), "unshare")
    if user_ns:
        # Map only the sandbox uid to our own: the program runs as that uid, holds no
        # capability after exec, and owns nothing of the host it could see.
        with open("/proc/self/setgroups", "w") as f:
            f.write("deny")
        with open("/proc/self/uid_map", "w") as f:
            f.write(f"{cfg['uid']} {outer_uid} 1")
        with open("/proc/self/gid_map", "w") as f:
            f.write(f"{cfg['uid']} {outer_gid} 1")


def _set_limits(cfg: dict) -> None:
    limits = {resource.RLIMIT_CORE: 0}
    if cfg["cpu_time_s"] is not None:  # soft limit sends SIGXCPU, the hard one SIGKILL
        limits[resource.RLIMIT_CPU] = (cfg["cpu_time_s"], cfg["cpu_time_s"] + 1)
    if cfg["memory_bytes"] is not None:
        limits[resource.RLIMIT_AS] = cfg["memory_bytes"]
    if cfg["max_processes"] is not None:
        limits[resource.RLIMIT_NPROC] = cfg["max_processes"]
    if cfg["max_file_bytes"] is not None:
        limits[resource.RLIMIT_FSIZE] = cfg["max_file_bytes"]
    if cfg["max_open_files"] is not None:
        limits[resource.RLIMIT_NOFILE] = cfg["max_open_files"]
    for which, value in limits.items():
        soft, hard = value if isinstance(value, tuple) else (value, value)
        resource.setrlimit(which, (soft, hard))


def _exec_program(cfg: dict, workdir: str, program_path: str) -> None:
    """Becomes the program: limits, uid drop, no_new_privs, then exec of the runner."""
    os.chdir(workdir)
    _set_limits(cfg)
    if cfg["drop_privileges"] and os.geteuid() == 0:
        uid = cfg["uid"]
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
    _prctl(PR_SET_NO_NEW_PRIVS, 1)  # setuid binaries in /usr cannot raise privileges
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # a uid change clears it, so set it after
    env = {"PATH": "/usr/bin:/bin", "HOME": workdir, "TMPDIR": workdir, "LANG": "C.UTF-8"}
    # run_id only labels the process (lets tests find leftovers by their command line).
    policy = {"audit_hook": cfg["audit_hook"], "workdir": workdir,
              "run_id": os.path.basename(cfg["scratch"])}
    argv = [cfg["python"], "-I", "-S", "-B", "-c", cfg["runner_source"],
            program_path, json.dumps(policy)]
    os.execve(cfg["python"], argv, env)


def _exit_status(status: int) -> int:
    return 128 + os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)


def _init(cfg: dict, parent_alive_fd: int) -> None:
    """Runs as pid 1 of the sandbox: builds the root, starts the program, reaps, exits."""
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if select.select([parent_alive_fd], [], [], 0)[0]:  # the launcher died before prctl
        os._exit(SETUP_FAILED)
    os.close(parent_alive_fd)
    _prctl(PR_SET_DUMPABLE, 0)
    with open(cfg["program"], "rb") as f:
        source = f.read()
    if cfg["namespaces"]:
        _build_root(cfg)
        workdir = JAIL_DIR
        program_path = os.path.join(JAIL_DIR, "program.py")
        with open(program_path, "wb") as f:
            f.write(source)
        os.chown(program_path, cfg["uid"], cfg["uid"])
    else:
        workdir, program_path = cfg["workdir"], cfg["program"]
        if cfg["drop_privileges"] and os.geteuid() == 0:  # the program must own its workdir
            os.chmod(cfg["scratch"], 0o711)  # ... and reach it, without listing its parent
            for path in (workdir, program_path):
                os.chown(path, cfg["uid"], cfg["uid"])
    if cfg["mode"] == "probe":
        os.write(1, b"ok\n")
        os._exit(0)
    child = os.fork()
    if child == 0:
        try:
            _exec_program(cfg, workdir, program_path)
        except BaseException as exc:  # noqa: BLE001 - report anything, never run unconfined
            os.write(2, f"fishfarm-sandbox: setup failed: {exc!r}\n".encode())
        os._exit(SETUP_FAILED)
    while True:  # as pid 1 we also reap orphans the program leaves behind
        pid, status = os.wait()
        if pid == child:
            os._exit(_exit_status(status))


def main() -> None:
    cfg = json.loads(sys.argv[1])
    try:
        if cfg["namespaces"]:
            _enter_namespaces(cfg)
        read_fd, write_fd = os.pipe()  # EOF on read_fd tells the init its launcher is gone
        pid = os.fork()
    except BaseException as exc:  # noqa: BLE001
        os.write(2, f"fishfarm-sandbox: setup failed: {exc!r}\n".encode())
        os._exit(SETUP_FAILED)
    if pid == 0:
        os.close(write_fd)
        try:
            _init(cfg, read_fd)
        except BaseException as exc:  # noqa: BLE001
            os.write(2, f"fishfarm-sandbox: setup failed: {exc!r}\n".encode())
        os._exit(SETUP_FAILED)
    os.close(read_fd)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    while True:
        try:
            _, status = os.waitpid(pid, 0)
            break
        except ChildProcessError:
            os._exit(SETUP_FAILED)
    os._exit(_exit_status(status))


if __name__ == "__main__":
    main()
