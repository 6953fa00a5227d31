"""The sandbox against hostile and broken programs.

Each hostile program must be scored failed with a reason, within its limit, while the caller
survives and a world-readable canary in a temporary "home" stays unchanged and unprinted.
Where it makes sense a second test switches the protecting limit off (or all layers off, for
harmless targets we own) to show that the limit is what stopped the program.
"""
from __future__ import annotations

import os
import secrets
import socket
import subprocess
import tempfile
import threading
import time
import warnings
from pathlib import Path

import pytest

import fishfarm.sandbox.supervisor as supervisor
from fishfarm.sandbox import (RunResult, Sandbox, SandboxConfig, SandboxLayers,
                              SandboxUnavailableError, detect_layers)

LAYERS = detect_layers()
needs_namespaces = pytest.mark.skipif(not LAYERS.namespaces, reason="no Linux namespaces here")
needs_root = pytest.mark.skipif(not LAYERS.root, reason="privilege drop needs root")
FAST = dict(timeout_s=3.0, cpu_time_s=2)


def run(program: str, **overrides) -> RunResult:
    return Sandbox(SandboxConfig(**{**FAST, **overrides})).run(program)


def leftover_processes(result: RunResult) -> list[int]:
    """Returns pids whose command line carries this run's id (launcher, init or program)."""
    run_id = os.path.basename(result.scratch_dir).encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if run_id in (entry / "cmdline").read_bytes():
                    pids.append(int(entry.name))
            except OSError:
                pass
    return pids


def assert_contained(result: RunResult, *, limit_s: float) -> None:
    assert not result.ok and result.reason
    assert result.wall_s < limit_s + 1.0, f"took {result.wall_s:.2f} s for a {limit_s} s limit"
    assert not Path(result.scratch_dir).exists(), "scratch dir not removed"
    assert_no_leftovers(result)


def assert_no_leftovers(result: RunResult) -> None:
    # Killed processes may take a moment to be reaped; a survivor would stay for good.
    deadline = time.monotonic() + 2.0
    while leftover_processes(result) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert leftover_processes(result) == []


@pytest.fixture
def home(tmp_path):
    """A fake home with a world-readable canary, so only the sandbox keeps a program away."""
    home = tmp_path / "home"
    home.mkdir()
    home.chmod(0o755)
    canary = home / "secret.txt"
    text = f"CANARY-{secrets.token_hex(8)}"
    canary.write_text(text)
    canary.chmod(0o644)
    yield home, canary, text
    assert canary.read_text() == text, "the sandboxed program changed the canary"


@pytest.fixture
def victim():
    """A process of the caller's user that a hostile program will try to kill."""
    proc = subprocess.Popen(["sleep", "60"])
    yield proc
    proc.kill()
    proc.wait()


@pytest.fixture
def tcp_server():
    """A server on the host's loopback; counts the connections it receives."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    srv.settimeout(0.2)
    accepted = []
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
                accepted.append(conn.recv(100))
                conn.close()
            except OSError:
                pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield srv.getsockname()[1], accepted
    stop.set()
    thread.join()
    srv.close()


# --- ordinary programs -------------------------------------------------------------------------

def test_runs_a_program_and_returns_its_output():
    result = run("import sys\nprint(sum(range(10)))\nprint('warn', file=sys.stderr)")
    assert result.ok and result.kind == "ok" and result.returncode == 0
    assert result.stdout == "45\n" and result.stderr == "warn\n"
    assert not Path(result.scratch_dir).exists()


def test_broken_programs_fail_with_a_reason_not_an_exception():
    for program, expected in [("def f(:\n", "SyntaxError"), ("1/0", "ZeroDivisionError"),
                              ("raise SystemExit(3)", "exit status 3"), ("input()", "EOFError"),
                              ("\x00\udcff", "")]:
        result = run(program)
        assert not result.ok and result.kind == "error"
        assert expected in result.reason


def test_program_can_use_its_scratch_dir_and_the_stdlib():
    result = run("import json, pathlib, tempfile\npathlib.Path('a.txt').write_text('x')\n"
                 "with tempfile.TemporaryDirectory() as d: pass\n"
                 "print(json.dumps(sorted(p.name for p in pathlib.Path('.').iterdir())))")
    assert result.ok, result.stderr
    assert "a.txt" in result.stdout


def test_environment_holds_no_secrets(monkeypatch):
    secret = f"hf_{secrets.token_hex(12)}"
    monkeypatch.setenv("HF_TOKEN", secret)
    program = (f"import os\nprint(dict(os.environ))\n"
               f"print(open('/proc/{os.getpid()}/environ', 'rb').read())\n")
    for audit_hook in (True, False):
        result = run(program, audit_hook=audit_hook)
        assert secret not in result.stdout + result.stderr
        assert "HF_TOKEN" not in result.stdout


def test_many_programs_run_in_parallel_in_order():
    programs = [f"import time; time.sleep(0.5); print({i})" for i in range(8)]
    start = time.monotonic()
    results = Sandbox(SandboxConfig(**FAST)).run_many(programs, max_workers=8)
    assert [r.stdout.strip() for r in results] == [str(i) for i in range(8)]
    assert time.monotonic() - start < 2.5  # one after another would take 4 s


# --- time ------------------------------------------------------------------------------------

def test_busy_loop_is_stopped_by_the_cpu_limit():
    # The wall clock is generous so that a busy machine still lets the loop use 1 s of CPU.
    result = run("while True: pass", cpu_time_s=1, timeout_s=6)
    assert result.kind == "cpu" and "cpu time limit" in result.reason
    assert_contained(result, limit_s=6)


def test_busy_loop_without_cpu_limit_is_stopped_by_the_wall_clock():
    result = run("while True: pass", cpu_time_s=None, timeout_s=1.5)
    assert result.kind == "timeout"
    assert_contained(result, limit_s=1.5)


def test_sleeping_loop_is_stopped_by_the_wall_clock():
    result = run("import time\nwhile True: time.sleep(1)", timeout_s=1.5)
    assert result.kind == "timeout" and "1.5 s" in result.reason
    assert_contained(result, limit_s=1.5)


# --- processes --------------------------------------------------------------------------------

FORK_COUNTER = """
import os, time
n = 0
try:
    while n < 64:
        if os.fork() == 0:
            time.sleep(30)
            os._exit(0)
        n += 1
except OSError as e:
    print("forks", n, type(e).__name__, flush=True)
    while True:
        time.sleep(1)
print("forks", n, flush=True)
"""


def test_fork_bomb_is_refused_by_the_audit_hook():
    result = run("import os\nwhile True:\n    os.fork()")
    assert result.kind == "error" and "os.fork" in result.reason
    assert_contained(result, limit_s=3)


@needs_root
def test_fork_bomb_without_audit_hook_hits_the_process_cap_and_leaves_nothing():
    result = run(FORK_COUNTER, audit_hook=False, max_processes=8, timeout_s=1.5)
    assert result.kind == "timeout"
    forks = int(result.stdout.split()[1])
    assert 0 < forks < 8 and "BlockingIOError" in result.stdout
    assert_contained(result, limit_s=1.5)  # sleeping children were killed with the namespace


@needs_root
def test_fork_counter_without_process_cap_forks_freely():
    result = run(FORK_COUNTER, audit_hook=False, max_processes=None, timeout_s=3)
    assert result.ok and result.stdout.split()[:2] == ["forks", "64"]
    assert_no_leftovers(result)


@needs_root
def test_spinning_fork_bomb_without_audit_hook_is_contained():
    bomb = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass"
    result = run(bomb, audit_hook=False, max_processes=8, timeout_s=1.5)
    assert result.kind in ("timeout", "cpu", "signal")
    assert_contained(result, limit_s=1.5)


# --- memory, output, files ---------------------------------------------------------------------

def test_memory_bomb_is_stopped_by_the_memory_limit():
    result = run("chunks = []\nwhile True:\n    chunks.append(bytearray(10**7))", memory_mb=256)
    assert result.kind == "memory" and "MemoryError" in result.reason
    assert_contained(result, limit_s=3)


def test_bounded_allocation_passes_only_without_memory_limit():
    program = "b = bytearray(400 * 2**20)\nprint(len(b))"
    assert run(program, memory_mb=256).kind == "memory"
    assert run(program, memory_mb=None).ok


def test_printing_gigabytes_is_stopped_by_the_output_cap():
    result = run("import sys\nwhile True:\n    sys.stdout.write('x' * 1_000_000)",
                 max_output_bytes=1 << 20)
    assert result.kind == "output"
    assert len(result.stdout) + len(result.stderr) <= 1 << 20
    assert_contained(result, limit_s=3)


def test_bounded_output_passes_only_without_output_cap():
    program = "import sys\nsys.stdout.write('x' * 5_000_000)"
    assert run(program, max_output_bytes=1 << 20).kind == "output"
    result = run(program, max_output_bytes=None)
    assert result.ok and len(result.stdout) == 5_000_000


def test_big_file_is_stopped_by_the_file_size_limit():
    program = "open('big', 'wb').write(b'x' * (32 << 20))"
    result = run(program, max_file_bytes=16 << 20)
    assert result.kind == "error" and "File too large" in result.reason
    assert run(program, max_file_bytes=None).ok


@needs_namespaces
def test_filling_the_disk_is_stopped_by_the_scratch_size():
    program = "for i in range(40):\n    open(f'f{i}', 'wb').write(b'x' * (1 << 20))"
    result = run(program, scratch_mb=8)
    assert result.kind == "error" and "No space left" in result.reason
    assert run(program, scratch_mb=64).ok


# --- the caller's files, processes and network ---------------------------------------------------

def test_deleting_files_fails_and_the_canary_survives(home):
    home_dir, canary, _ = home
    program = (f"import os, shutil\nos.remove({str(canary)!r})\n"
               f"shutil.rmtree({str(home_dir)!r})\nopen({str(canary)!r}, 'w').write('pwned')")
    for audit_hook in (True, False):
        result = run(program, audit_hook=audit_hook)
        assert result.kind == "error"
        assert_contained(result, limit_s=3)
    # The fixture asserts the canary is unchanged.


def test_reading_home_fails_and_leaks_nothing(home):
    _, canary, text = home
    reads = [f"print(open({str(canary)!r}).read())",
             "import os\nprint(os.listdir(os.path.expanduser('~')), os.listdir('/root'))",
             "print(open('/root/.bashrc').read())",
             f"import os\nprint(os.listdir({str(canary.parent)!r}))"]
    for audit_hook in (True, False):
        for program in reads:
            result = run(program, audit_hook=audit_hook)
            assert text not in result.stdout + result.stderr
            assert "secret.txt" not in result.stdout


@needs_namespaces
def test_sockets_reach_nothing(tcp_server):
    port, accepted = tcp_server
    program = (f"import socket\ns = socket.create_connection(('127.0.0.1', {port}), timeout=1)\n"
               f"s.sendall(b'leak')")
    for audit_hook in (True, False):
        result = run(program, audit_hook=audit_hook)
        assert result.kind == "error"
        assert_contained(result, limit_s=3)
    time.sleep(0.3)
    assert accepted == []


def test_killing_parent_or_caller_processes_fails(victim):
    programs = ["import os, signal\nos.kill(os.getppid(), signal.SIGKILL)",
                f"import os, signal\nos.kill({victim.pid}, signal.SIGKILL)",
                f"import os, signal\nos.kill({os.getpid()}, signal.SIGKILL)"]
    for audit_hook in (True, False):
        for program in programs:
            result = run(program, audit_hook=audit_hook)
            assert not result.ok
            assert_contained(result, limit_s=3)
    assert victim.poll() is None, "the sandboxed program killed a process of the caller"


@needs_root
def test_ctypes_bypass_of_the_audit_hook_is_still_jailed(home):
    _, canary, text = home
    program = ("import ctypes\nlibc = ctypes.CDLL(None)\nprint('uid', libc.getuid())\n"
               f"print(open({str(canary)!r}).read())")
    assert "ctypes" in run(program).reason  # the hook refuses ctypes ...
    result = run(program, audit_hook=False)  # ... and without it the OS layers still hold
    assert not result.ok and text not in result.stdout
    assert "uid 0" not in result.stdout


SYSTEM_PYTHON = "/usr/bin/python3"


@needs_root
@pytest.mark.skipif(not os.access(SYSTEM_PYTHON, os.X_OK), reason="needs a system Python")
def test_privilege_drop_alone_protects_private_files_but_not_public_ones(victim):
    """Without namespaces (e.g. Docker's default seccomp) the uid drop is the OS layer left."""
    with tempfile.TemporaryDirectory(dir="/tmp") as folder:  # pytest's tmp_path is 0700
        os.chmod(folder, 0o755)
        _check_privilege_drop(Path(folder), victim)


def _check_privilege_drop(folder: Path, victim) -> None:
    private, public = folder / "private.txt", folder / "public.txt"
    private.write_text("PRIVATE")
    private.chmod(0o600)
    public.write_text("PUBLIC")
    public.chmod(0o644)
    config = dict(namespaces=False, audit_hook=False, python=SYSTEM_PYTHON)
    result = run("import os\nprint(os.getuid())", **config)
    assert result.ok and int(result.stdout) >= 1_000_000_000
    assert "Permission denied" in run(f"print(open({str(private)!r}).read())", **config).reason
    assert "Operation not permitted" in run(f"import os\nos.kill({victim.pid}, 9)",
                                            **config).reason
    # What the docs admit: world-readable files are readable without the mount namespace.
    assert run(f"print(open({str(public)!r}).read())", **config).stdout == "PUBLIC\n"
    assert victim.poll() is None


@needs_root
def test_all_layers_off_lets_the_same_programs_through(home, victim, tcp_server):
    """Control: the hostile tests above would fail if the layers were removed.

    Only harmless targets that the test owns (a temp canary, a `sleep`, a local server).
    """
    _, canary, text = home
    port, accepted = tcp_server
    off = dict(namespaces=False, audit_hook=False, drop_privileges=False)
    assert text in run(f"print(open({str(canary)!r}).read())", **off).stdout
    assert run(f"import socket\nsocket.create_connection(('127.0.0.1', {port})).sendall(b'hi')",
               **off).ok
    assert run(f"import os\nos.kill({victim.pid}, 9)", **off).ok
    victim.wait(timeout=5)
    time.sleep(0.3)
    assert accepted == [b"hi"]


# --- layer detection and degradation -------------------------------------------------------

def test_missing_layers_warn_once_or_raise_when_required(monkeypatch):
    fake = SandboxLayers(namespaces=False, root=False, uid_can_reach_python=True,
                         notes=(f"probe said no {secrets.token_hex(4)}",))
    monkeypatch.setattr(supervisor, "detect_layers", lambda python=None: fake)
    with pytest.warns(RuntimeWarning, match="namespaces.*unavailable"):
        sandbox = Sandbox(SandboxConfig(**FAST))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Sandbox(SandboxConfig(**FAST))  # the same warning is not repeated
    assert sandbox.run("print('still runs')").stdout == "still runs\n"
    with pytest.raises(SandboxUnavailableError, match="SANDBOX.md"):
        Sandbox(SandboxConfig(require_isolation=True))


def test_bad_interpreter_is_named():
    with pytest.raises(ValueError, match="not an executable"):
        Sandbox(SandboxConfig(python="/nonexistent/python"))


def test_host_mounts_are_untouched():
    before = Path("/proc/self/mounts").read_text()
    assert run("print(1)").ok
    assert Path("/proc/self/mounts").read_text() == before
