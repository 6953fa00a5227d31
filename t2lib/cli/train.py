"""`python -m t2lib train`: train SVF experts (a cluster job, or `make experts`).

    python -m t2lib train --preset tiny --all              # the tiny experts (make experts)
    python -m t2lib train --preset tiny --task add_word    # one expert; Ctrl-C, rerun: it resumes
    python -m t2lib train --preset paper --task gsm8k --kl-coef 0 0.1 0.2 0.3   # λ chosen on validation
    python -m t2lib train --preset tiny --all --rescore    # test scores of the trained experts again
    python -m t2lib train --suite examples/two_skills.yaml --preset tiny --all   # your own tasks (docs/own_tasks.md)

Each expert goes to experts/<preset>/<category>.safetensors + .json; the run (checkpoint,
metrics.jsonl) to build/train/<preset>/<category>/. Base and expert test accuracy go to
`table1_svf_vs_base.csv` in the preset's figures folder (the paper's Table 1 at this scale), and
which test questions each got right to `table1_svf_vs_base.json` (for paired intervals).
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

from t2lib.locks import FolderBusyError, owning_all
from t2lib.paths import experts_dir
from t2lib.presets import add_preset_arguments, preset_from_args
from t2lib.runs.expert_sets import experts_to_train
from t2lib.runs.tables import merge_table1
from t2lib.runs.training import compare_recorded, describe, rescore_expert, train_experts, train_run_folder

OVERRIDES = ("steps", "batch_size", "micro_batch_size", "eval_every", "seed", "lr")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m t2lib train",
                                description="Train SVF experts with REINFORCE (resumes by default).")
    add_preset_arguments(p)
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--task", help="training task of the preset's suite, e.g. add_word, gsm8k, or classification")
    which.add_argument("--all", action="store_true",
                       help="the suite's training tasks, then its classification task when it has one")
    p.add_argument("--out", help="expert path stem (one task only)")
    p.add_argument("--run-dir", help="checkpoint folder (one task only)")
    p.add_argument("--fresh", action="store_true", help="ignore checkpoints of earlier runs")
    p.add_argument("--missing", action="store_true",
                   help="train only the experts that experts/<preset>/ lacks (what `make reproduce` runs first)")
    p.add_argument("--no-test", action="store_true", help="skip the test-split evaluation")
    p.add_argument("--rescore", action="store_true",
                   help="no training: score the trained experts on the test split again, print them beside "
                        "the accuracies their JSON records, and update Table 1 (with per-question results)")
    p.add_argument("--kl-coef", type=float, nargs="+", help="λ values; several: best on validation")
    for key in OVERRIDES[:-1]:
        p.add_argument(f"--{key.replace('_', '-')}", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--grad-dtype", choices=("auto", "bfloat16", "float16", "none"),
                   help="autocast dtype of the gradient passes (none: the model's); the shipped tiny "
                        "experts used bfloat16, the tiny preset says auto")
    return p


def chosen_tasks(p: argparse.ArgumentParser, args, preset) -> list[str]:
    """Returns the tasks to train or rescore, after every check that needs no model."""
    suite = preset.suite_spec
    if args.task is not None and args.task not in suite.trainable:
        p.error(f"argument --task: {args.task!r} is not trained on in the {suite.name} suite of preset "
                f"{preset.name!r}; choose one of {', '.join(suite.trainable)}")
    tasks = list(suite.trainable) if args.all else [args.task]
    if args.missing:
        if args.rescore or args.out:
            p.error("--missing looks in experts/<preset>/; it goes without --rescore and --out")
        missing, message = experts_to_train(preset)
        tasks = [t for t in tasks if t in missing]
        print(message, flush=True)
    if len(tasks) > 1 and (args.out or args.run_dir):
        p.error("--out and --run-dir name one expert; use them with --task")
    if args.rescore:  # every expert file must be there before the model loads
        for task in tasks:
            stem = Path(args.out) if args.out else (experts_dir(preset.folder, create=False)
                                                    / suite.expert_name(task))
            if not stem.with_suffix(".safetensors").exists():
                p.error(f"--rescore: no expert at {stem}.safetensors; train it with "
                        f"`python -m t2lib train {preset.cli_options} --task {task}`")
    if args.run_dir and Path(args.run_dir).exists() and not Path(args.run_dir).is_dir():
        p.error(f"argument --run-dir: {args.run_dir} exists and is not a folder")
    return tasks


def main(argv: Sequence[str] | None = None) -> int:
    from t2lib.session import Session

    p = parser()
    args = p.parse_args(argv)
    preset = preset_from_args(args)
    tasks = chosen_tasks(p, args, preset)
    if not tasks:
        return 0
    overrides = {k: getattr(args, k) for k in OVERRIDES if getattr(args, k) is not None}
    if args.grad_dtype is not None:
        overrides["grad_dtype"] = None if args.grad_dtype == "none" else args.grad_dtype
    folders = [] if args.rescore else [train_run_folder(preset, t, args.run_dir) for t in tasks]
    try:  # the run folders are held before the model loads: a busy one stops this at once
        with owning_all(folders, what="training"):
            session = Session(preset)
            if args.rescore:
                rows = []
                for task in tasks:
                    row = rescore_expert(session, task, path=args.out)
                    print(f"{row['expert']} ({task}): test {row['base_accuracy']:.1%} -> "
                          f"{row['expert_accuracy']:.1%} (n={row['n']}); against the recorded accuracies: "
                          f"{compare_recorded(row)}", flush=True)
                    rows.append(row)
                print(f"wrote {merge_table1(rows, preset)}", flush=True)
                return 0
            for row in train_experts(session, tasks, overrides=overrides, kl_coefs=args.kl_coef, out=args.out,
                                     run_dir=args.run_dir, fresh=args.fresh, test=not args.no_test):
                print(describe(row), flush=True)
                if "table" in row:
                    print(f"wrote {row['table']}", flush=True)
    except FolderBusyError as err:
        p.exit(1, f"{p.prog}: {err}\n")
    return 0
