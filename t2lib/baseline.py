"""The base model's accuracy on every task of a preset: the reference line of every later table.

    python -m t2lib.baseline --preset tiny        # what `make baseline` runs (~10 min on 2 cores)

Writes `baseline_<preset>.csv`, `fig_baseline_<preset>.png` and `baseline_<preset>.json` (rows
plus run info) to the preset's figures folder. Each task's result is also kept in
build/baseline/<preset>/, so an interrupted run resumes with the tasks it has not finished
(`--fresh` ignores them).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

from t2lib.atomic import atomic_write_csv, atomic_write_json
from t2lib.paths import REPO_ROOT, figures_dir
from t2lib.presets import Preset, get_preset
from t2lib.reinforce import spread_ids

COLUMNS = ("suite", "task", "category", "role", "split", "n", "accuracy", "truncated", "seconds")


def _sample_ids(ids: Sequence[str], limit: int | None, *, spread: bool) -> list[str]:
    """Returns the first `limit` ids, or `limit` ids spread evenly over the split."""
    if spread:
        return spread_ids(ids, limit)
    return list(ids)[:limit] if limit else list(ids)


def _task_eval(make_task, limit: int | None, *, spread: bool):
    def evaluate(backend) -> dict:
        task = make_task()
        result = task.evaluate(backend, sample_ids=_sample_ids(task.ids, limit, spread=spread))
        return {"n": len(result.samples), "accuracy": result.accuracy, "truncated": result.metrics["truncated"]}
    return evaluate


def _dispatch_eval(limit: int | None):
    """Scores `PromptDispatcher` in "choice" mode on the classification task (no generation)."""
    def evaluate(backend) -> dict:
        from fishfarm.tiny import classification_task
        from t2lib.dispatch import PromptDispatcher

        task = classification_task("test")
        records = [task.record(s) for s in _sample_ids(task.ids, limit, spread=True)]
        predicted = PromptDispatcher(backend, mode="choice").classify([r["question"] for r in records])
        correct = sum(p == r["category"] for p, r in zip(predicted, records))
        return {"n": len(records), "accuracy": correct / len(records), "truncated": 0.0}
    return evaluate


def suite_tasks(preset: Preset) -> list[tuple[dict, object]]:
    """Returns (row metadata, evaluate(backend) -> {n, accuracy, truncated}) for every task."""
    from fishfarm.paper_tasks import CATEGORY, paper_task
    from fishfarm.tiny import TINY_TASKS, classification_task, tiny_task

    out = []
    if preset.suite == "tiny":
        for spec in TINY_TASKS.values():
            out.append(({"suite": "tiny", "task": spec.name, "category": spec.category, "role": spec.role},
                        _task_eval(lambda n=spec.name: tiny_task(n, "test"), preset.eval_limit, spread=True)))
        meta = {"suite": "tiny", "category": "dispatch", "role": "dispatch"}
        # The paper's reading (generate, parse \boxed{}) on a 48-question sample: SmolLM2 rarely
        # follows the format, and 350-token prompts make every question cost ~1 s on 2 cores.
        out.append(({**meta, "task": "classification"},
                    _task_eval(lambda: classification_task("test"), preset.eval_limit or 48, spread=True)))
        out.append(({**meta, "task": "classification (choice)"}, _dispatch_eval(preset.eval_limit)))
    for name, category in CATEGORY.items():
        role = "train" if name in ("gsm8k", "mbpp", "arc_easy") else "unseen"
        make = (lambda n=name: paper_task(n, "test", max_new_tokens=preset.paper_max_new_tokens))
        out.append(({"suite": "paper", "task": name, "category": category, "role": role},
                    _task_eval(make, preset.paper_eval_limit, spread=False)))
    return out


def run_baseline(preset: Preset, *, fresh: bool = False, progress: bool = True,
                 work_dir: Path | None = None) -> list[dict]:
    """Evaluates the base model on every task of `preset`; returns one row per task.

    Each finished task's row is kept in `work_dir` (default build/baseline/<preset>) and reused
    by a later run with the same preset and model unless `fresh`.
    """
    from fishfarm import HFBackend
    lm = preset.load_model()
    backend = HFBackend(lm.model, lm.tokenizer, batch_size=preset.batch_size, max_batch_tokens=preset.max_batch_tokens,
                        logprob_batch_size=preset.logprob_batch_size, progress=progress)
    work = work_dir or REPO_ROOT / "build" / "baseline" / preset.name
    rows = []
    for meta, evaluate in suite_tasks(preset):
        meta = {**meta, "split": "test"}
        key = hashlib.blake2b(json.dumps([meta, asdict(preset), str(lm.resolved.path)]).encode(),
                              digest_size=8).hexdigest()
        done = work / f"{meta['task']}-{key}.json"
        if done.exists() and not fresh:
            rows.append(json.loads(done.read_text()))
            print(f"{meta['task']:15s} (kept from an earlier run) {rows[-1]['accuracy']:.1%}", flush=True)
            continue
        start = time.time()
        metrics = evaluate(backend)
        row = {**meta, "n": metrics["n"], "accuracy": round(metrics["accuracy"], 4),
               "truncated": round(metrics["truncated"], 4), "seconds": round(time.time() - start, 1)}
        atomic_write_json(done, row)
        rows.append(row)
        print(f"{meta['task']:15s} n={row['n']:4d} accuracy={row['accuracy']:.1%} "
              f"truncated={row['truncated']:.0%} ({row['seconds']:.0f} s)", flush=True)
    return rows


def write_outputs(rows: Sequence[dict], preset: Preset, *, started: float) -> Path:
    """Writes the CSV, the plot and the JSON with run info; returns the CSV path."""
    from t2lib.runinfo import write_results

    out = figures_dir(preset.name)
    csv_path = out / f"baseline_{preset.name}.csv"
    atomic_write_csv(csv_path, rows, COLUMNS)
    draw_figure(rows, preset.name, out)
    write_results(out / f"baseline_{preset.name}.json", list(rows), preset=preset, started=started)
    return csv_path


def draw_figure(rows: Sequence[dict], preset_name: str, folder: Path) -> Path:
    """Draws the base model's accuracy per task (fig_baseline_<preset>.png) into `folder`."""
    from t2lib import plots

    fig = plots.plot_variant_bars({f"{r['suite']}/{r['task']} ({r['role']})": 100 * r["accuracy"] for r in rows},
                                  ylabel="base model accuracy (%)", title=f"Base model, preset {preset_name}")
    return plots.save_figure(fig, folder / f"fig_baseline_{preset_name}.png")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Base model accuracy on every task of a preset.")
    parser.add_argument("--preset", default="tiny", help="smoke | tiny | paper (default: tiny)")
    parser.add_argument("--fresh", action="store_true", help="recompute tasks finished by an earlier run")
    args = parser.parse_args(argv)
    preset = get_preset(args.preset)
    started = time.time()
    rows = run_baseline(preset, fresh=args.fresh)
    path = write_outputs(rows, preset, started=started)
    print(f"wrote {path} in {time.time() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
