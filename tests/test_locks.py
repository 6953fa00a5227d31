"""Two processes, one folder: real processes merge into one table, train on one run folder, get
killed while holding a folder, and run a notebook beside a command line on one adaptation store."""
from __future__ import annotations

import csv
import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from t2lib.locks import FolderBusyError, check_free, owning
from t2lib.paths import REPO_ROOT
from t2lib.presets import get_preset
from t2lib.runs.tables import TABLE1_COLUMNS, merge_table1, read_table

PYTHON = sys.executable


def env_for(tmp_path: Path) -> dict:
    """The environment of a child process: results, runs and experts under tmp_path."""
    return {**os.environ, "T2_FIGURES_DIR": str(tmp_path / "figures"), "T2_BUILD_DIR": str(tmp_path / "build"),
            "T2_EXPERTS_DIR": str(tmp_path / "experts"), "PYTHONPATH": str(REPO_ROOT)}


MERGER = textwrap.dedent("""
    import sys, time
    from t2lib.presets import get_preset
    from t2lib.runs.tables import merge_table1
    worker, start_at = int(sys.argv[1]), float(sys.argv[2])
    while time.time() < start_at:  # every process starts merging at the same moment
        time.sleep(0.005)
    for i in range(20):
        name = f"w{worker}-r{i:02d}"
        row = {"expert": name, "task": "add_word", "n": 2, "base_accuracy": 0.5, "expert_accuracy": 1.0,
               "per_question": {"ids": ["a", "b"], "base": [1, 0], "expert": [1, 1]}}
        merge_table1([row], get_preset("smoke"))
""")


def test_eight_processes_merging_twenty_rows_each_keep_all_160(tmp_path):
    start_at = time.time() + 8  # after every interpreter has imported the kit
    procs = [subprocess.Popen([PYTHON, "-c", MERGER, str(w), str(start_at)], env=env_for(tmp_path),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for w in range(8)]
    for p in procs:
        out, _ = p.communicate(timeout=300)
        assert p.returncode == 0, out
    path = tmp_path / "figures" / "table1_svf_vs_base.csv"
    with path.open(newline="") as f:
        in_csv = [r["expert"] for r in csv.DictReader(f)]
    record = json.loads(path.with_suffix(".json").read_text())
    expected = sorted(f"w{w}-r{i:02d}" for w in range(8) for i in range(20))
    assert sorted(in_csv) == expected and len(in_csv) == 160
    assert sorted(r["expert"] for r in record["table"]["rows"]) == expected
    assert sorted(record["results"]["per_question"]) == expected
    # the CSV is the one derived from the JSON's rows
    assert hashlib.sha256(path.read_bytes()).hexdigest() == record["table"]["csv_sha256"]


def test_a_csv_left_behind_by_a_crash_is_written_again_from_its_json(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("T2_FIGURES_DIR", str(tmp_path))
    row = {"expert": "math", "task": "add_word", "n": 2, "base_accuracy": 0.5, "expert_accuracy": 1.0}
    path = merge_table1([row], get_preset("smoke"))
    path.write_text(",".join(TABLE1_COLUMNS) + "\n")  # as if the process died between the JSON and the CSV
    table = read_table(path)
    assert [r["expert"] for r in table["rows"]] == ["math"]
    assert "did not match" in capsys.readouterr().out
    with path.open(newline="") as f:
        assert [r["expert"] for r in csv.DictReader(f)] == ["math"]


HOLDER = textwrap.dedent("""
    import sys, time
    from t2lib.locks import owning
    with owning(sys.argv[1], what="a test run"):
        print("held", flush=True)
        time.sleep(600)
""")


def test_a_held_run_folder_stops_a_second_owner_and_names_the_holder(tmp_path):
    holder = subprocess.Popen([PYTHON, "-c", HOLDER, str(tmp_path / "run")], env=env_for(tmp_path),
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(FolderBusyError) as err:
            with owning(tmp_path / "run"):
                pass
        assert f"pid {holder.pid}" in str(err.value) and "a test run" in str(err.value)
        assert "--run-dir" in str(err.value)
    finally:
        holder.kill()
        holder.wait()


def test_a_run_killed_with_sigkill_leaves_no_lock_that_blocks_the_next(tmp_path):
    holder = subprocess.Popen([PYTHON, "-c", HOLDER, str(tmp_path / "run")], env=env_for(tmp_path),
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    assert (tmp_path / "run" / ".owner.json").exists()  # what it wrote of itself stays, but no longer binds
    check_free(tmp_path / "run")
    with owning(tmp_path / "run", what="the next run"):
        assert json.loads((tmp_path / "run" / ".owner.json").read_text())["pid"] == os.getpid()


@pytest.mark.integration
def test_two_trainers_on_one_folder_one_runs_the_other_stops_at_once(tmp_path):
    command = [PYTHON, "-m", "t2lib", "train", "--preset", "smoke", "--task", "add_word", "--run-dir",
               str(tmp_path / "run"), "--out", str(tmp_path / "expert"), "--steps", "2", "--no-test"]
    logs = [tmp_path / f"train{i}.log" for i in range(2)]  # files, not pipes: a full pipe would stall a trainer
    procs = [subprocess.Popen(command, env=env_for(tmp_path), stdout=log.open("w"), stderr=subprocess.STDOUT)
             for log in logs]
    # the one that loses stops while the other is still training
    while all(p.poll() is None for p in procs):
        time.sleep(0.2)
    first = next(p for p in procs if p.poll() is not None)
    other = next(p for p in procs if p is not first)
    assert other.poll() is None, "both finished at once: one should have stopped before the other trained"
    out = logs[procs.index(first)].read_text()
    assert first.returncode == 1, out
    assert f"{tmp_path / 'run'} is held by pid {other.pid}" in out and "--run-dir" in out
    other.wait(timeout=600)
    assert other.returncode == 0, logs[procs.index(other)].read_text()
    steps = [json.loads(line)["step"] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [0, 1, 2]  # each step once (step 0: the base model on validation)
    assert (tmp_path / "expert.safetensors").exists()


@pytest.mark.integration
@pytest.mark.notebooks
def test_a_notebook_and_a_command_line_on_one_adaptation_store_agree(tmp_path):
    env = {k: v for k, v in env_for(tmp_path).items() if k != "T2_EXPERTS_DIR"}  # the shipped experts
    log = tmp_path / "notebook.log"
    notebook = subprocess.Popen(
        [PYTHON, "-c", "import sys; from pathlib import Path; from t2lib.runs.notebooks import run_notebook; "
         "run_notebook(Path(sys.argv[1]), Path(sys.argv[2]), parameters={'PRESET': 'smoke'}, progress=False)",
         str(REPO_ROOT / "notebooks" / "03_prompt_dispatch.ipynb"), str(tmp_path / "executed")],
        env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    command = subprocess.run([PYTHON, "-m", "t2lib", "adapt", "--preset", "smoke", "--strategies", "base", "prompt"],
                             env=env, capture_output=True, text=True, timeout=900)
    notebook.wait(timeout=900)
    assert notebook.returncode == 0, log.read_text()
    assert command.returncode == 0, command.stdout + command.stderr
    by_notebook = read_table(tmp_path / "figures" / "nb03_prompt.csv")["rows"]
    by_command = read_table(tmp_path / "figures" / "table2_adaptation.csv")["rows"]
    # each (task, strategy) was computed once and reused by the other: even the pass times agree
    assert by_notebook == by_command and len(by_command) > 0
    records = list((tmp_path / "build" / "adapt" / "smoke").glob("*.json"))
    assert len(records) == len(by_command)
