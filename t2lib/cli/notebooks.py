"""`python -m t2lib notebooks`: run the kit's notebooks headlessly with papermill, in order.

    python -m t2lib notebooks --preset tiny            # all notebooks (what `make reproduce` runs)
    python -m t2lib notebooks --preset smoke --only 01 # one notebook

Executed copies go to the output folder (default build/notebooks); the stored notebooks stay
without outputs. Figures and results are written by the notebooks themselves (see `figures_dir`).
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

from fishfarm.backends import BACKEND_CHOICES
from t2lib.paths import build_dir
from t2lib.presets import PRESETS
from t2lib.runs.notebooks import NOTEBOOKS_DIR, list_notebooks, run_notebooks


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m t2lib notebooks", description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="tiny", choices=PRESETS, help="default: tiny")
    p.add_argument("--out", default=str(build_dir() / "notebooks"), help="executed copies")
    p.add_argument("--only", nargs="*", default=(), help="notebook number prefixes, e.g. 01 02")
    p.add_argument("--backend", choices=BACKEND_CHOICES, help="generation backend (default: each notebook's preset's)")
    args = p.parse_args(argv)
    if not list_notebooks(only=args.only):
        p.error(f"--only: no notebooks match {' '.join(args.only)} in {NOTEBOOKS_DIR}")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        p.error(f"--out: {out} exists and is not a folder")
    run_notebooks(args.preset, out, only=args.only, backend=args.backend)
    return 0
