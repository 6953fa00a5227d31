"""`python -m t2lib reproduce` (`make reproduce`): check what a preset needs, train the experts it
lacks, then run every notebook.

    python -m t2lib reproduce --preset tiny              # what `make reproduce` runs
    python -m t2lib reproduce --preset paper --plan      # the steps and their expected time; runs nothing
    python -m t2lib reproduce --preset rehearsal         # every paper-scale path, tiny model, minutes
    python -m t2lib reproduce --preset tiny --suite examples/two_skills.yaml   # your own tasks: the notebooks that take SUITE

Before any long work it checks, in seconds, that the base model can be loaded (a local folder, the
hub cache, the hub, or the offline package), that the GPU the preset needs is there with enough
memory, and that the disk holds the SVD cache (`t2lib.runs.preflight`); anything missing stops it
with what is missing and the fix. Training resumes from checkpoints and skips experts that exist,
so an interrupted run goes on where it stopped when started again. On the tiny preset the executed
notebooks also replace the book's copies in docs/notebooks/.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

from fishfarm.backends import BACKEND_CHOICES
from fishfarm.suites import is_suite_file
from t2lib.paths import build_dir
from t2lib.presets import add_preset_arguments, preset_from_args
from t2lib.runs.expert_sets import experts_to_train
from t2lib.runs.notebooks import BOOK_NOTEBOOKS_DIR, BOOK_PRESET, copy_to_book, run_notebooks
from t2lib.runs.preflight import PreflightError, plan, preflight, require
from t2lib.runs.training import describe, train_experts


def print_plan(preset) -> None:
    """Prints the checks, the steps and their expected time."""
    for c in preflight(preset):
        print(f"{'ok  ' if c.ok else 'MISSING'} {c.name}: {c.detail}" + (f"\n        fix: {c.fix}" if c.fix else ""))
    total = 0.0
    for s in plan(preset):
        total += s.minutes
        print(f"{s.minutes:8.1f} min  {s.what:45s} {s.command}   [{s.basis}]")
    print(f"{total:8.1f} min  in all ({total / 60:.1f} h)")


def main(argv: Sequence[str] | None = None) -> int:
    from t2lib.session import Session

    p = argparse.ArgumentParser(prog="python -m t2lib reproduce", description=__doc__.splitlines()[0])
    add_preset_arguments(p, model_options=False)  # the notebooks read the preset as registered
    p.add_argument("--backend", choices=BACKEND_CHOICES,
                   help="generation backend for training and every notebook (default: the preset's)")
    p.add_argument("--out", default=str(build_dir() / "notebooks"), help="executed notebooks")
    p.add_argument("--plan", action="store_true", help="print the checks, the steps and their expected time")
    args = p.parse_args(argv)
    preset = preset_from_args(args)  # an unusable --backend fails here, naming the fix
    if args.plan:
        print_plan(preset)
        return 0
    try:
        checks = require(preset)
    except PreflightError as err:
        p.exit(2, f"{err}\n")
    for c in checks:
        print(f"ok   {c.name}: {c.detail}", flush=True)
    tasks, message = experts_to_train(preset)
    print(message, flush=True)
    if tasks:
        for row in train_experts(Session(preset), tasks):
            print(describe(row), flush=True)
    suite = preset.suite if is_suite_file(preset.suite) else None  # a suite file: the notebooks that take SUITE
    executed = run_notebooks(preset.name, Path(args.out), backend=args.backend and preset.backend, suite=suite)
    if preset.name == BOOK_PRESET and not args.backend and not suite:
        copy_to_book(executed)  # the book's executed copies (docs/notebooks/) follow a tiny run
        print(f"executed copies for the book: {BOOK_NOTEBOOKS_DIR}", flush=True)
    return 0
