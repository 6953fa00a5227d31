"""`python -m t2lib baseline`: the base model's accuracy on every task of a preset (`make baseline`).

    python -m t2lib baseline --preset tiny        # ~10 min on 2 cores
    python -m t2lib baseline --preset tiny --suite examples/two_skills.yaml   # a suite file's tasks (and the paper's)

Writes `baseline_<preset>.csv`, `fig_baseline_<preset>.png` and `baseline_<preset>.json` (rows
plus run info) to the preset's figures folder. Each task's result is kept in build/baseline/<preset>/,
so an interrupted run resumes with the tasks it has not finished (`--fresh` ignores them).
"""
from __future__ import annotations

import argparse
import time
from typing import Sequence

from t2lib.presets import add_preset_arguments, preset_from_args
from t2lib.runs.baseline import run_baseline, write_baseline


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m t2lib baseline", description="Base model accuracy on every task of a preset.")
    add_preset_arguments(p)
    p.add_argument("--fresh", action="store_true", help="recompute tasks finished by an earlier run")
    args = p.parse_args(argv)
    preset = preset_from_args(args)
    started = time.time()
    rows = run_baseline(preset, fresh=args.fresh)
    print(f"wrote {write_baseline(rows, preset, started=started)} in {time.time() - started:.0f} s")
    return 0
