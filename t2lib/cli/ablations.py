"""`python -m t2lib ablations`: Table 4 at the preset's scale (`make ablations`), or Table 5.

    python -m t2lib ablations --preset tiny          # Table 4 (resumable): t2lib.runs.ablations
    python -m t2lib ablations --preset smoke --rows svf-pg-mlp lora-nt-attn
    python -m t2lib ablations --preset tiny --suite examples/two_skills.yaml   # on a suite file's math category
    python -m t2lib ablations --preset tiny --shuffle-control        # Table 5: t2lib.runs.transfer
    python -m t2lib ablations --preset paper-mistral --shuffle-control --transfer-from experts/paper

Results: figures[/<preset>]/table4_ablations.csv and .json (run info), with the paper's numbers
beside (`t2lib.views.paper.TABLE4`); table5_shuffled_sigma / table5_transfer .csv and .json.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Sequence

from t2lib.core.experts import ExpertMismatchError
from t2lib.locks import FolderBusyError
from t2lib.presets import add_preset_arguments, preset_from_args
from t2lib.runs.ablations import BY_NAME, run_ablations, write_ablations
from t2lib.runs.transfer import run_shuffle_control, table5_rows, write_transfer


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m t2lib ablations",
                                description="Table 4: objective x target set x method (resumable).")
    add_preset_arguments(p)
    p.add_argument("--rows", nargs="+", choices=tuple(BY_NAME), default=list(BY_NAME))
    p.add_argument("--fresh", action="store_true", help="recompute rows kept from earlier runs")
    p.add_argument("--shuffle-control", action="store_true",
                   help="Table 5's control instead: each expert on its unseen task, z ordered and shuffled")
    p.add_argument("--transfer-from", type=Path, metavar="FOLDER",
                   help="with --shuffle-control: apply the category experts in FOLDER, trained on another "
                        "base model with the same target shapes, to this one (Table 5's transfer)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    if args.transfer_from is not None and not args.shuffle_control:
        p.error("--transfer-from goes with --shuffle-control (Table 5)")
    preset = preset_from_args(args)
    started = time.time()
    if args.shuffle_control:
        try:
            rows = run_shuffle_control(preset, fresh=args.fresh, transfer_from=args.transfer_from)
        except (FileNotFoundError, ExpertMismatchError) as e:
            p.error(str(e))
        write_transfer(rows, preset, transfer=args.transfer_from is not None, started=started)
        for r in table5_rows(rows):
            print(f"{r['task']:14s} base {r['base_accuracy']:.1%}  ordered {r['ordered_accuracy']:.1%}  "
                  f"shuffled {r['shuffled_accuracy']:.1%}  (n={r['n']})", flush=True)
        return 0
    if preset.backend != "hf":
        p.error("--backend: the LoRA rows generate with their own HF model; run the grid with --backend hf")
    try:
        records = run_ablations(preset, args.rows, fresh=args.fresh)
    except FolderBusyError as err:
        p.exit(1, f"{p.prog}: {err}\n")
    print(f"wrote {write_ablations(records, preset, started=started)} in {time.time() - started:.0f} s", flush=True)
    return 0
