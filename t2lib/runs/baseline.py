"""The base model's accuracy on every task of a preset: the reference line of every later table
(`python -m t2lib baseline`). Each task's row is kept and reused by a rerun."""
from __future__ import annotations

import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Sequence

from fishfarm.suites import Suite, get_suite
from t2lib.presets import Preset
from t2lib.runs.store import ResultStore
from t2lib.runs.tables import write_table
from t2lib.samples import spread_ids

RECORD_VERSION = 1
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
        official = {"accuracy_official": result.metrics["accuracy_official"]} if "accuracy_official" in result.metrics else {}
        return {"n": len(result.samples), "accuracy": result.accuracy, "truncated": result.metrics["truncated"],
                **official}
    return evaluate


def _dispatch_eval(make_task, limit: int | None):
    """Scores `PromptDispatcher` in "choice" mode on a classification task (no generation)."""
    def evaluate(backend) -> dict:
        from t2lib.methods.dispatch import PromptDispatcher

        task = make_task()
        records = [task.record(s) for s in _sample_ids(task.ids, limit, spread=True)]
        predicted = PromptDispatcher(backend, mode="choice").classify([r["question"] for r in records])
        correct = sum(p == r["category"] for p, r in zip(predicted, records))
        return {"n": len(records), "accuracy": correct / len(records), "truncated": 0.0}
    return evaluate


def baseline_suites(preset: Preset) -> list[Suite]:
    """Returns the suites the baseline covers: the preset's, then the paper suite (the reference
    every preset is read against) when the preset's is another."""
    own = preset.suite_spec
    paper = get_suite("paper")
    return [own] if own is paper else [own, paper]


def suite_tasks(preset: Preset) -> list[tuple[dict, object]]:
    """Returns (row metadata, evaluate(backend) -> {n, accuracy, truncated}) for every task."""
    out = []
    for suite in baseline_suites(preset):
        # Paper-scale suites: the first `paper_eval_limit` samples; the others: `eval_limit` spread.
        limit, spread = (preset.paper_eval_limit, False) if suite.paper_scale else (preset.eval_limit, True)
        for name in (t for c in suite.categories for t in (suite.training[c], suite.unseen.get(c)) if t):
            out.append(({"suite": suite.name, "task": name, "category": suite.category(name), "role": suite.role(name)},
                        _task_eval(lambda n=name, s=suite.name: preset.task(n, "test", suite=s), limit, spread=spread)))
        if suite.classification and suite is preset.suite_spec:  # dispatch is read on the preset's own suite
            make = (lambda s=suite: preset.task(s.classification, "test", suite=s.name))
            meta = {"suite": suite.name, "category": "dispatch", "role": "dispatch"}
            # The paper's reading (generate, parse \boxed{}) on a 48-question sample: SmolLM2 rarely
            # follows the format, and 350-token prompts make every question cost ~1 s on 2 cores.
            out.append(({**meta, "task": suite.classification}, _task_eval(make, limit or 48, spread=True)))
            out.append(({**meta, "task": f"{suite.classification} (choice)"}, _dispatch_eval(make, limit)))
    return out


def run_baseline(preset: Preset, *, fresh: bool = False, progress: bool = True) -> list[dict]:
    """Evaluates the base model on every task of `preset`; returns one row per task.

    Each finished task's row is kept (`t2lib.runs.store`, build/baseline/<preset>/) and reused by a
    later run with the same preset and model unless `fresh`.
    """
    from fishfarm.backends import resolve_backend
    from t2lib.session import preset_backend

    preset = replace(preset, backend=resolve_backend(preset.backend))  # keys name the backend used
    lm = preset.load_model()
    backend = preset_backend(preset, lm, progress=progress)
    store = ResultStore("baseline", preset.folder, version=RECORD_VERSION)
    rows = []
    for meta, evaluate in suite_tasks(preset):
        meta = {**meta, "split": "test"}

        def compute() -> dict:
            start = time.time()
            metrics = evaluate(backend)
            return {**meta, "n": metrics["n"], "accuracy": round(metrics["accuracy"], 4),
                    "truncated": round(metrics["truncated"], 4), "seconds": round(time.time() - start, 1),
                    "accuracy_official": round(metrics["accuracy_official"], 4) if "accuracy_official" in metrics else ""}
        row, kept = store.fetch(meta["task"], [meta, asdict(preset), str(lm.resolved.path)], compute, fresh=fresh)
        rows.append(row)
        if kept:
            print(f"{meta['task']:15s} (kept from an earlier run) {row['accuracy']:.1%}", flush=True)
        else:
            print(f"{meta['task']:15s} n={row['n']:4d} accuracy={row['accuracy']:.1%} "
                  f"truncated={row['truncated']:.0%} ({row['seconds']:.0f} s)", flush=True)
    return rows


def write_baseline(rows: Sequence[dict], preset: Preset, *, started: float) -> Path:
    """Writes baseline_<preset>.csv, its JSON with run info and fig_baseline_<preset>.png; returns the CSV path."""
    from t2lib.views.figures import baseline_figure

    rows = [{"accuracy_official": "", **r} for r in rows]  # rows kept from before it was recorded
    official = any(r["accuracy_official"] != "" for r in rows)  # paper tasks: the official verdicts beside
    path = write_table(preset, f"baseline_{preset.name}", rows, (*COLUMNS, "accuracy_official") if official else COLUMNS,
                       results=list(rows), started=started)
    baseline_figure(rows, preset.name, path.parent)
    return path
