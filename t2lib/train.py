"""Train SVF experts from the command line (a cluster job, or `make experts`).

    python -m t2lib.train --preset tiny --all              # the tiny experts (make experts)
    python -m t2lib.train --preset tiny --task add_word    # one expert; Ctrl-C, rerun: it resumes
    python -m t2lib.train --preset paper --task gsm8k --kl-coef 0 0.1 0.2 0.3   # λ chosen on validation
    python -m t2lib.train --preset tiny --all --rescore    # test scores of the trained experts again

Each expert goes to experts/<preset>/<category>.safetensors + .json; the run (checkpoint,
metrics.jsonl) to build/train/<preset>/<category>/. Base and expert test accuracy go to
`table1_svf_vs_base.csv` in the preset's figures folder (the paper's Table 1 at this scale), and
which test questions each got right to `table1_svf_vs_base.json` (for paired intervals).
"""
from __future__ import annotations

import argparse
import csv
import json
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

from fishfarm.task import Task
from t2lib.atomic import atomic_write_csv
from t2lib.experts import Expert
from t2lib.paths import build_dir, experts_dir, figures_dir
from t2lib.presets import Preset, add_preset_arguments, preset_from_args
from t2lib.reinforce import ReinforceConfig, ReinforceTrainer, evaluation_sampling
from t2lib.samples import spread_ids
from t2lib.session import Session

TABLE_COLUMNS = ("expert", "task", "n", "base_accuracy", "expert_accuracy", "gain_points", "best_step",
                 "steps", "kl_coef", "val_base_accuracy", "val_accuracy", "train_seconds", "test_seconds")


@dataclass
class Splits:
    """The three splits of a training task."""
    train: Task
    validation: Task
    test: Task


def task_splits(preset: Preset, task: str) -> Splits:
    """Returns the train / validation / test splits of a task the preset's suite trains on
    (a training task, or its classification task: training-task prompts labelled by category)."""
    suite = preset.suite_spec
    if task not in suite.trainable:
        raise ValueError(f"no expert is trained on {task!r} in the {suite.name} suite; choose one of "
                         f"{', '.join(suite.trainable)}")
    return Splits(*(preset.task(task, split) for split in ("train", "validation", "test")))


def expert_name(preset: Preset, task: str) -> str:
    """Returns the name of the expert trained on `task`: its category ("math", ...) or "classification"."""
    return preset.suite_spec.expert_name(task)


def train_expert(session: Session, task: str, *, config: ReinforceConfig | None = None,
                 kl_coefs: Sequence[float] | None = None, out: str | Path | None = None,
                 run_dir: str | Path | None = None, fresh: bool = False, test: bool = True,
                 progress: bool = True) -> dict:
    """Trains (or resumes) one expert, saves it and returns its row of Table 1.

    Args:
        session: the loaded base model.
        task: a training task of the preset's suite, or "classification".
        config: training settings (default: the preset's for this task).
        kl_coefs: train once per λ and keep the best on validation (paper: {0, 0.1, 0.2, 0.3});
            default: the preset's `train_kl_sweep`, else `config.kl_coef`.
        out: expert path stem (default experts/<preset>/<category>).
        run_dir: checkpoint folder (default build/train/<preset>/<category>).
        fresh: ignore earlier checkpoints.
        test: evaluate the base model and the expert on the test split.
    """
    preset = session.preset
    config = config or preset.train_config(task)
    name = expert_name(preset, task)
    splits = task_splits(preset, task)
    run_root = Path(run_dir) if run_dir else build_dir() / "train" / preset.name / name
    best = None
    kl_coefs = list(kl_coefs or preset.train_kl_sweep or [config.kl_coef])
    for kl in kl_coefs:
        cfg = replace(config, kl_coef=kl)
        folder = run_root / f"kl{kl:g}" if len(kl_coefs) > 1 else run_root
        trainer = ReinforceTrainer(session.svf, session.backend, splits.train, config=cfg, run_dir=folder,
                                   validation=splits.validation, name=name, progress=progress,
                                   grad_backend=session.grad_backend)
        result = trainer.train(fresh=fresh)
        if best is None or result.expert.metrics["val_accuracy"] > best[1].expert.metrics["val_accuracy"]:
            best = (trainer, result)
    trainer, result = best
    expert = result.expert
    row = {"expert": name, "task": task, "best_step": result.best_step, "steps": config.steps,
           "kl_coef": trainer.config.kl_coef,
           "val_base_accuracy": expert.metrics["val_base_accuracy"], "val_accuracy": expert.metrics["val_accuracy"],
           "train_seconds": round(result.train_seconds, 1), "run_dir": str(trainer.run_dir)}
    expert.config = {"preset": preset.name, **expert.config, "task": task}
    if test:
        row.update(score_test(session, splits.test, expert, config=trainer.config, progress=progress))
        expert.metrics.update(test_accuracy=row["expert_accuracy"], test_base_accuracy=row["base_accuracy"],
                              test_n=row["n"])
    path = expert.save(out or experts_dir(preset.name) / name)
    row["path"] = str(path)
    return row


def score_test(session: Session, test: Task, expert: Expert, *, config: ReinforceConfig,
               progress: bool = True) -> dict:
    """Scores the base model and `expert` on a test split, greedy as in validation; returns the
    test fields of a Table 1 row and "per_question": {"ids", "base", "expert"} (1/0 per
    question, for paired intervals)."""
    ids = spread_ids(test.ids, session.preset.eval_limit)
    sampling = evaluation_sampling(config, test)
    started = time.perf_counter()
    correct = {}
    for label, weights in (("base", None), ("expert", expert)):
        with session.svf.using(weights):
            result = test.evaluate(session.backend, sample_ids=ids, sampling=sampling, progress=progress)
        correct[label] = [int(s.score.correct) for s in result.samples]
    base, tuned = (sum(correct[k]) / len(ids) for k in ("base", "expert"))
    return {"n": len(ids), "base_accuracy": round(base, 4), "expert_accuracy": round(tuned, 4),
            "gain_points": round(100 * (tuned - base), 1), "test_seconds": round(time.perf_counter() - started, 1),
            "per_question": {"ids": list(ids), **correct}}


def rescore_expert(session: Session, task: str, *, path: str | Path | None = None, progress: bool = True) -> dict:
    """Scores a trained expert file on the test split again, without training; returns its
    Table 1 row (training fields from the expert's JSON) with "recorded": the test accuracies
    its JSON holds, to compare."""
    preset = session.preset
    name = expert_name(preset, task)
    path = Path(path) if path else experts_dir(preset.name) / name
    if not path.with_suffix(".safetensors").exists():
        raise FileNotFoundError(f"no expert at {path}.safetensors: train it with "
                                f"`python -m t2lib.train --preset {preset.name} --task {task}`")
    expert = Expert.load(path)
    m, c = expert.metrics, expert.config
    config = preset.train_config(task)
    config = replace(config, max_new_tokens=c.get("max_new_tokens", config.max_new_tokens))
    row = {"expert": name, "task": task, "best_step": m.get("best_step"), "steps": m.get("steps"),
           "kl_coef": c.get("kl_coef"), "val_base_accuracy": m.get("val_base_accuracy"),
           "val_accuracy": m.get("val_accuracy"), "train_seconds": m.get("train_seconds"),
           **score_test(session, task_splits(preset, task).test, expert, config=config, progress=progress),
           "path": str(path)}
    row["recorded"] = {"base_accuracy": m.get("test_base_accuracy"), "expert_accuracy": m.get("test_accuracy")}
    return row


def compare_recorded(row: dict) -> str:
    """Returns how a `rescore_expert` row's test accuracies compare with those the expert's JSON
    records: "the same", "DIFFERENT (...)", or "not recorded"."""
    rec = row["recorded"]
    if rec["base_accuracy"] is None or rec["expert_accuracy"] is None:
        return "not recorded"
    same = all(abs(rec[k] - row[k]) < 1e-4 for k in ("base_accuracy", "expert_accuracy"))
    return "the same" if same else (f"DIFFERENT (recorded {rec['base_accuracy']:.1%} -> "
                                    f"{rec['expert_accuracy']:.1%})")


def write_table(rows: Sequence[dict], preset: Preset, *, name: str = "table1_svf_vs_base") -> Path:
    """Merges rows into the preset's <name>.csv (one row per expert; default table1_svf_vs_base,
    the LoRA baseline writes table1_lora), and their per-question test results into <name>.json;
    returns the CSV's path."""
    from t2lib.runinfo import write_results

    path = figures_dir(preset.name) / f"{name}.csv"
    merged: dict[str, dict] = {}
    if path.exists():
        with path.open(newline="") as f:
            merged = {r["expert"]: r for r in csv.DictReader(f)}
    written = {r["expert"] for r in rows if "base_accuracy" in r}
    scored = {r["expert"]: r["per_question"] for r in rows if r["expert"] in written and "per_question" in r}
    for row in rows:
        if row["expert"] in written:
            merged[row["expert"]] = {k: row.get(k, "") for k in TABLE_COLUMNS}
    atomic_write_csv(path, (merged[k] for k in sorted(merged)), TABLE_COLUMNS)
    json_path = path.with_suffix(".json")
    if scored or json_path.exists():
        old = json.loads(json_path.read_text())["results"]["per_question"] if json_path.exists() else {}
        # a rewritten row replaces its expert's per-question results, or drops them if it has none
        kept = {k: v for k, v in old.items() if k in merged and k not in written}
        write_results(json_path, {"per_question": {**kept, **scored}}, preset=preset)
    return path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Train SVF experts with REINFORCE (resumes by default).")
    add_preset_arguments(parser)
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--task", help="training task of the preset's suite, e.g. add_word, gsm8k, or classification")
    which.add_argument("--all", action="store_true",
                       help="the suite's training tasks, then its classification task when it has one")
    parser.add_argument("--out", help="expert path stem (one task only)")
    parser.add_argument("--run-dir", help="checkpoint folder (one task only)")
    parser.add_argument("--fresh", action="store_true", help="ignore checkpoints of earlier runs")
    parser.add_argument("--missing", action="store_true",
                        help="train only the experts that experts/<preset>/ lacks (what `make reproduce` runs first)")
    parser.add_argument("--no-test", action="store_true", help="skip the test-split evaluation")
    parser.add_argument("--rescore", action="store_true",
                        help="no training: score the trained experts on the test split again, print them beside "
                             "the accuracies their JSON records, and update Table 1 (with per-question results)")
    parser.add_argument("--kl-coef", type=float, nargs="+", help="λ values; several: best on validation")
    for key in ("steps", "batch_size", "micro_batch_size", "eval_every", "seed"):
        parser.add_argument(f"--{key.replace('_', '-')}", type=int)
    parser.add_argument("--lr", type=float)
    parser.add_argument("--grad-dtype", choices=("auto", "bfloat16", "float16", "none"),
                        help="autocast dtype of the gradient passes (none: the model's); the shipped tiny "
                             "experts used bfloat16, the tiny preset says auto")
    args = parser.parse_args(argv)
    preset = preset_from_args(args)
    suite = preset.suite_spec
    if args.task is not None and args.task not in suite.trainable:
        parser.error(f"argument --task: {args.task!r} is not trained on in the {suite.name} suite of preset "
                     f"{preset.name!r}; choose one of {', '.join(suite.trainable)}")
    overrides = {k: getattr(args, k) for k in ("steps", "batch_size", "micro_batch_size", "eval_every", "seed", "lr")
                 if getattr(args, k) is not None}
    if args.grad_dtype is not None:
        overrides["grad_dtype"] = None if args.grad_dtype == "none" else args.grad_dtype
    tasks = list(suite.trainable) if args.all else [args.task]
    if args.missing:
        if args.rescore or args.out:
            parser.error("--missing looks in experts/<preset>/; it goes without --rescore and --out")
        if preset.expert_set != preset.name:
            print(f"preset {preset.name} uses the {preset.expert_set} experts: nothing to train here", flush=True)
            return 0
        tasks = [t for t in tasks
                 if not (experts_dir(preset.name, create=False) / f"{expert_name(preset, t)}.safetensors").exists()]
        print(f"experts to train for preset {preset.name}: {', '.join(tasks) or 'none, all are there'}", flush=True)
        if not tasks:
            return 0
    if len(tasks) > 1 and (args.out or args.run_dir):
        parser.error("--out and --run-dir name one expert; use them with --task")
    if args.rescore:  # every expert file must be there before the model loads
        for task in tasks:
            stem = Path(args.out) if args.out else experts_dir(preset.name, create=False) / expert_name(preset, task)
            if not stem.with_suffix(".safetensors").exists():
                parser.error(f"--rescore: no expert at {stem}.safetensors; train it with "
                             f"`python -m t2lib.train --preset {preset.name} --task {task}`")
    if args.run_dir and Path(args.run_dir).exists() and not Path(args.run_dir).is_dir():
        parser.error(f"argument --run-dir: {args.run_dir} exists and is not a folder")
    session = Session(preset)
    if args.rescore:
        rows = []
        for task in tasks:
            row = rescore_expert(session, task, path=args.out)
            print(f"{row['expert']} ({task}): test {row['base_accuracy']:.1%} -> {row['expert_accuracy']:.1%} "
                  f"(n={row['n']}); against the recorded accuracies: {compare_recorded(row)}", flush=True)
            rows.append(row)
        print(f"wrote {write_table(rows, preset)}", flush=True)
        return 0
    for task in tasks:
        config = replace(preset.train_config(task), **overrides)
        row = train_expert(session, task, config=config, kl_coefs=args.kl_coef, out=args.out,
                           run_dir=args.run_dir, fresh=args.fresh, test=not args.no_test)
        summary = (f"test {row['base_accuracy']:.1%} -> {row['expert_accuracy']:.1%}"
                   if "base_accuracy" in row else f"validation {row['val_accuracy']:.1%}")
        print(f"{row['expert']} ({task}): {summary}, best step {row['best_step']}, "
              f"trained in {row['train_seconds']:.0f} s -> {row['path']}", flush=True)
        if "base_accuracy" in row:  # each expert's row as soon as it is done: an interrupted --all keeps them
            print(f"wrote {write_table([row], preset)}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
