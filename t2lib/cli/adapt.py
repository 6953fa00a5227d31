"""`python -m t2lib adapt`: adaptation on the unseen tasks (paper Tables 2 and 3), every strategy.

    python -m t2lib adapt --preset tiny                 # what `make adapt` runs
    python -m t2lib adapt --preset tiny --strategies base prompt
    python -m t2lib adapt --suite examples/two_skills.yaml --preset tiny   # your own tasks (docs/own_tasks.md)

Writes `table2_adaptation.csv` (accuracy, pass-1 and pass-2 seconds), `fig_dispatch_<strategy>.png`
(dispatch confusion matrices), `fig_fewshot_alpha.png` (the α found per task) and
`table2_adaptation.json` (rows, confusion counts, α, CEM history, run info) to the preset's figures
folder. Each finished (task, strategy) is kept in build/adapt/<preset>/ and reused on a rerun
(`--fresh` recomputes). The steps: `t2lib.runs.adaptation`.
"""
from __future__ import annotations

import argparse
import time
from dataclasses import replace
from typing import Sequence

from t2lib.core.experts import ExpertMismatchError
from t2lib.methods.cem import OFFICIAL_SHOT_SEEDS
from t2lib.core.mixing import MIX_SPACES
from t2lib.methods.strategies import STRATEGIES
from t2lib.presets import add_preset_arguments, preset_from_args
from t2lib.runs.adaptation import check_strategies, run_adaptation, write_adaptation


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m t2lib adapt",
                                description="Adaptation strategies on the unseen tasks (Table 2).")
    add_preset_arguments(p)
    p.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=STRATEGIES)
    p.add_argument("--fresh", action="store_true", help="recompute results kept from earlier runs")
    p.add_argument("--shot-seeds", choices=("kit", "official"), default="kit",
                   help="draw each task's few-shot shots with the preset's seed (kit) or with the official "
                        "script's per-task seeds (MATH 27, HumanEval 16, ARC-Challenge 38)")
    p.add_argument("--alpha", choices=("expert", "layer", "matrix"),
                   help="few-shot mixing weights: one per expert, per expert and layer, or per expert and "
                        "target matrix (the official script); default: the preset's")
    p.add_argument("--mix-space", choices=MIX_SPACES,
                   help="mix the experts' stored vectors z (the paper's formula, the official code) or the "
                        "scales they apply to σ; default: the preset's (z)")
    return p


def protocol(args, preset):
    """Returns (the preset with the chosen few-shot settings, the names of the settings that differ
    from the preset's: they name the table written)."""
    cem, names = preset.cem, []
    if args.shot_seeds == "official":
        cem, names = replace(cem, shot_seeds=OFFICIAL_SHOT_SEEDS), names + ["official-shots"]
    if args.alpha:
        cem = replace(cem, per_matrix=args.alpha == "matrix", per_layer=args.alpha == "layer")
        names.append(f"alpha-per-{args.alpha}")
    if args.mix_space:
        cem = replace(cem, mix_space=args.mix_space)
        names.append(f"mix-{args.mix_space}")
    if preset.arc_cot_prefix:
        names.append("arc-cot")
    return replace(preset, cem=cem), names


def main(argv: Sequence[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    preset, names = protocol(args, preset_from_args(args))
    try:
        check_strategies(preset, args.strategies)
    except (FileNotFoundError, ExpertMismatchError) as err:
        p.error(str(err))
    started = time.time()
    result = run_adaptation(preset, strategies=args.strategies, fresh=args.fresh)
    # Another protocol writes its own table, beside the preset's own (not over it).
    path = write_adaptation(result, preset, started=started,
                            name="table2_adaptation" + "".join(f"_{n}" for n in names), figures=not names)
    print(f"wrote {path} in {time.time() - started:.0f} s")
    return 0
