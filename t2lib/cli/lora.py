"""`python -m t2lib lora`: the LoRA baseline (PEFT) of the paper's Tables 1 and 2.

    python -m t2lib lora --preset tiny --task add_word     # Table 1 +LoRA: experts/tiny/lora-math/
    python -m t2lib lora --preset tiny --unseen            # Table 2 +LoRA: table2_lora.csv

The paper's recipe (Table 6): rank 16, alpha 32, dropout 0.05 on q and v, next-token prediction on
the reference solutions, the learning rate chosen on validation from a sweep.
"""
from __future__ import annotations

import argparse
import time
from typing import Sequence

from t2lib.core.svd import TARGET_SETS
from t2lib.locks import FolderBusyError, owning
from t2lib.methods.lora import LoRASettings
from t2lib.presets import add_preset_arguments, preset_from_args
from t2lib.runs.adaptation import score_lora_unseen
from t2lib.runs.tables import TABLE2_COLUMNS, merge_table1, write_table
from t2lib.runs.training import LORA_LR_SWEEP, lora_run_folder, train_lora


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m t2lib lora",
                                description="Train the LoRA baseline (PEFT) on a training task (Table 1 +LoRA).")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--task", help="a training task of the preset's suite, e.g. add_word, gsm8k")
    what.add_argument("--unseen", action="store_true",
                      help="no training: each category's adapter on its unseen task (Table 2 +LoRA, table2_lora.csv)")
    add_preset_arguments(p)
    p.add_argument("--objective", choices=("next_token", "policy_gradient"), default="next_token",
                   help="next-token prediction on reference solutions (the paper's LoRA) or REINFORCE")
    p.add_argument("--lora-targets", choices=tuple(TARGET_SETS), default="attn",
                   help="matrices the adapter sits on (default attn: q and v, the paper's)")
    p.add_argument("--rank", type=int, default=16)
    p.add_argument("--lr", type=float, nargs="+", default=list(LORA_LR_SWEEP),
                   help="learning rates to try; the best on validation is kept")
    p.add_argument("--steps", type=int, help="updates per run (default: the preset's)")
    p.add_argument("--out", help="adapter folder (default experts/<preset>/lora-<category>)")
    p.add_argument("--fresh", action="store_true", help="ignore checkpoints of earlier runs")
    p.add_argument("--no-test", action="store_true", help="skip the test-split evaluation")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    preset = preset_from_args(args)
    if preset.backend != "hf":
        p.error("--backend: the LoRA baseline generates with its own HF model (vLLM would need the adapter); "
                "use --backend hf")
    if args.unseen:
        started = time.time()
        try:
            result = score_lora_unseen(preset)
        except FileNotFoundError as err:
            p.error(str(err))
        write_table(preset, "table2_lora", result["rows"], TABLE2_COLUMNS, results=result, started=started)
        for r in result["rows"]:
            print(f"{r['task']:14s} lora n={r['n']} accuracy={r['accuracy']:.1%}", flush=True)
        return 0
    if args.task not in preset.suite_spec.training.values():
        p.error(f"--task {args.task!r} is not a training task of the {preset.suite} suite; choose one of "
                f"{', '.join(preset.suite_spec.training.values())}")
    settings = LoRASettings(r=args.rank, alpha=2 * args.rank, targets=args.lora_targets)
    try:  # its run folder is held before the model loads: a busy one stops this at once
        with owning(lora_run_folder(preset, args.task), what="training LoRA"):
            row = train_lora(preset, args.task, settings=settings, objective=args.objective, lrs=args.lr,
                             steps=args.steps, out=args.out, fresh=args.fresh, test=not args.no_test)
    except FolderBusyError as err:
        p.exit(1, f"{p.prog}: {err}\n")
    summary = (f"test {row['base_accuracy']:.1%} -> {row['expert_accuracy']:.1%}" if "base_accuracy" in row
               else f"validation {row['val_accuracy']:.1%}")
    print(f"{row['expert']} ({args.task}, lr {row['lr']:g}, {row['num_params']} parameters): {summary}, "
          f"trained in {row['train_seconds']:.0f} s -> {row['path']}", flush=True)
    if "base_accuracy" in row:
        print(f"wrote {merge_table1([row], preset, name='table1_lora')}", flush=True)
    return 0
