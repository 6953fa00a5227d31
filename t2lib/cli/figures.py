"""`python -m t2lib figures` (`make figures`): redraw the figures of a preset from its written
results (`t2lib.views.figures.rebuild`), then run notebooks 06 and 08, the paper's tables beside
the kit's. No model, no training: seconds.
"""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

from t2lib.paths import build_dir
from t2lib.presets import PRESETS
from t2lib.runs.notebooks import run_notebooks
from t2lib.views.figures import rebuild


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m t2lib figures", description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="tiny", choices=PRESETS, help="default: tiny")
    p.add_argument("--no-notebook", action="store_true", help="skip notebooks 06 and 08 (the paper's tables)")
    args = p.parse_args(argv)
    written, skipped = rebuild(args.preset)
    for path in written:
        print("redrew", path)
    for name in skipped:
        print("no", name, "- skipped", file=sys.stderr)
    if not args.no_notebook:
        run_notebooks(args.preset, build_dir() / "notebooks", only=["06", "08"])
    return 0
