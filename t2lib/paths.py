"""Where the kit keeps things: the working folder (`kit_home`: the checkout, $T2_HOME, or the current
folder outside a checkout) and the user's cache."""
from __future__ import annotations

import os
from pathlib import Path


# The folder above the package: a checkout (a clone, installed editable), or site-packages.
REPO_ROOT = Path(__file__).resolve().parent.parent
IN_CHECKOUT = (REPO_ROOT / "pyproject.toml").is_file() and (REPO_ROOT / "notebooks").is_dir()


def kit_home() -> Path:
    """Returns the working folder that holds figures/, experts/ and build/: $T2_HOME, else the
    checkout the kit runs from (a clone, installed editable), else the current folder (a
    non-editable `pip install`, whose package folder in site-packages is no place to write)."""
    if os.environ.get("T2_HOME"):
        return Path(os.environ["T2_HOME"]).expanduser().resolve()
    return REPO_ROOT if IN_CHECKOUT else Path.cwd().resolve()


HOME = kit_home()
FIGURES_DIR = HOME / "figures"
EXPERTS_DIR = HOME / "experts"


def cache_dir() -> Path:
    """Returns the kit's cache folder: $T2_CACHE_DIR, else ~/.cache/transformer2-kit.

    It holds converted models and SVD caches; deleting it only costs recomputation.
    """
    root = os.environ.get("T2_CACHE_DIR") or Path.home() / ".cache" / "transformer2-kit"
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def figures_dir(preset: str) -> Path:
    """Returns where a preset's figures and results go: figures/ for the default preset ("tiny"),
    figures/<preset>/ for the others; $T2_FIGURES_DIR overrides both (tests use it)."""
    override = os.environ.get("T2_FIGURES_DIR")
    path = Path(override) if override else FIGURES_DIR if preset == "tiny" else FIGURES_DIR / preset
    path.mkdir(parents=True, exist_ok=True)
    return path


def experts_dir(preset: str, *, create: bool = True) -> Path:
    """Returns where a preset's trained experts go: experts/<preset>/ ($T2_EXPERTS_DIR overrides).

    experts/tiny/ is committed (the shipped experts); other presets' folders are not. With
    `create=False` (checks that only look) the folder is not made.
    """
    override = os.environ.get("T2_EXPERTS_DIR")
    path = Path(override) if override else EXPERTS_DIR / preset
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path


def build_dir() -> Path:
    """Returns the folder for runs, checkpoints and executed notebooks: $T2_BUILD_DIR, else build/."""
    return Path(os.environ.get("T2_BUILD_DIR") or HOME / "build")
