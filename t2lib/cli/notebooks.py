"""`python -m t2lib notebooks`: run the kit's notebooks headlessly with papermill, in order.

    python -m t2lib notebooks --preset tiny            # all notebooks (what `make reproduce` runs)
    python -m t2lib notebooks --preset smoke --only 01 # one notebook
    python -m t2lib notebooks --book                   # the book's stale executed copies (make book-notebooks)

Executed copies go to the output folder (default build/notebooks); the stored notebooks stay
without outputs. Figures and results are written by the notebooks themselves (see `figures_dir`).
With --book, the notebooks whose executed copy in docs/notebooks/ is missing or has other code
cells than the source run on the tiny preset and replace their copy (--book --all: every one).
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

from fishfarm.backends import BACKEND_CHOICES
from t2lib.paths import build_dir
from t2lib.presets import PRESETS
from t2lib.runs.notebooks import (BOOK_NOTEBOOKS_DIR, NOTEBOOKS_DIR, list_notebooks, refresh_book_copies,
                                  run_notebooks)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m t2lib notebooks", description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="tiny", choices=PRESETS, help="default: tiny")
    p.add_argument("--out", default=str(build_dir() / "notebooks"), help="executed copies")
    p.add_argument("--only", nargs="*", default=(), help="notebook number prefixes, e.g. 01 02")
    p.add_argument("--backend", choices=BACKEND_CHOICES, help="generation backend (default: each notebook's preset's)")
    p.add_argument("--book", action="store_true",
                   help=f"refresh the book's executed tiny copies in {BOOK_NOTEBOOKS_DIR} that are missing or stale")
    p.add_argument("--all", action="store_true", help="with --book: refresh every copy")
    args = p.parse_args(argv)
    if args.book:
        if args.only or args.preset != "tiny" or args.backend:
            p.error("--book runs the notebooks the book lacks on the tiny preset: it takes no --only, --preset or --backend")
        done = refresh_book_copies(every=args.all)
        print(f"{len(done)} executed cop{'y' if len(done) == 1 else 'ies'} refreshed in {BOOK_NOTEBOOKS_DIR}")
        return 0
    if args.all:
        p.error("--all goes with --book")
    if not list_notebooks(only=args.only):
        p.error(f"--only: no notebooks match {' '.join(args.only)} in {NOTEBOOKS_DIR}")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        p.error(f"--out: {out} exists and is not a folder")
    run_notebooks(args.preset, out, only=args.only, backend=args.backend)
    return 0
