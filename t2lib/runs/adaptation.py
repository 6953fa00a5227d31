"""Table 2's steps: every adaptation strategy (and the LoRA baseline) on the unseen tasks, scored on
the same questions: each unseen task's test split minus the few-shot shots (drawn with a fixed
seed; few-shot searches α on them and on nothing else).

    result = run_adaptation(preset)                       # rows, confusion, α, per-question results
    write_adaptation(result, preset, started=t0)          # table2_adaptation.csv/.json + figures

Each finished (task, strategy) is kept (`t2lib.runs.store`, build/adapt/<preset>/) and reused on a
rerun. Within a run, a sample that two strategies answer with the same weights is generated once;
its pass-2 seconds count for both (`Transformer2`'s `answers`).
"""
from __future__ import annotations

import time
from collections import Counter
from dataclasses import asdict, replace
from pathlib import Path
from typing import Sequence

from t2lib.core.fingerprint import fingerprint
from t2lib.methods.lora import META_FILE, LoRAAdapter
from t2lib.methods.strategies import REGISTRY, STRATEGIES
from t2lib.methods.transformer2 import Transformer2
from t2lib.paths import experts_dir
from t2lib.runs.expert_sets import check_expert_set, load_expert_set
from t2lib.runs.scoring import official_accuracy, score_questions
from t2lib.runs.store import ResultStore
from t2lib.runs.tables import TABLE2_COLUMNS, table_columns, write_table
from t2lib.runs.training import lora_model
from t2lib.samples import draw_shots, spread_ids

RECORD_VERSION = 3  # a kept (task, strategy) result of another version is recomputed


def scored_questions(preset, name: str, ids: Sequence[str]) -> tuple[list[str], list[str]]:
    """Returns (the few-shot shots, the ids every strategy is scored on) among the test split `ids`
    of the unseen task `name`."""
    shots, rest = draw_shots(ids, preset.cem.shots, seed=preset.cem.shot_seed(name))
    return shots, spread_ids(rest, preset.eval_limit)


def check_strategies(preset, strategies: Sequence[str], folder: Path | None = None) -> Path:
    """Checks, before any model loads, that the strategies exist and their experts are there;
    returns the expert folder."""
    unknown = [s for s in strategies if s not in REGISTRY]
    if unknown:
        raise ValueError(f"unknown strategies {unknown}; choose among {', '.join(STRATEGIES)}")
    return check_expert_set(preset, folder, classification="cls-expert" in strategies)


def run_adaptation(preset, *, strategies: Sequence[str] = STRATEGIES, fresh: bool = False,
                   session=None, experts_folder: Path | None = None, progress: bool = True) -> dict:
    """Evaluates each strategy on each unseen task; returns {"rows", "confusion", "alpha", "cem",
    "per_question"}: per_question[task] holds the scored "ids" and, per strategy, 1/0 for each;
    confusion[strategy][category] counts the labels of strategies that dispatch by category; every
    other key holds what a strategy's pass 1 found per task (few-shot: "alpha", "cem")."""
    from t2lib.session import Session

    check_strategies(preset, strategies, experts_folder)
    session = session or Session(preset, progress=progress)
    preset = replace(preset, backend=session.backend_name)  # records and keys name the backend used
    experts, cls_expert = load_expert_set(preset, experts_folder)
    store = ResultStore("adapt", preset.folder, version=RECORD_VERSION)
    inputs = [asdict(preset), str(session.lm.resolved.path), {c: fingerprint(e.z.items()) for c, e in experts.items()},
              cls_expert and fingerprint(cls_expert.z.items())]
    out = {"rows": [], "confusion": {}, "alpha": {}, "cem": {}, "per_question": {}}
    answers: dict = {}  # pass-2 answers shared by the strategies (Transformer2's `answers`)
    for category, name in preset.suite_spec.unseen.items():
        task = preset.task(name, "test")
        shots, scored = scored_questions(preset, name, task.ids)
        for strategy in strategies:
            def compute() -> dict:
                t2 = two_pass(preset, session, experts, cls_expert, strategy, progress=progress, answers=answers)
                return adaptation_record(t2.evaluate(task, scored, shot_ids=shots), scored, name, category, strategy)
            record, kept = store.fetch(f"{name}-{strategy}", inputs, compute, fresh=fresh)
            row = record["row"]
            print(f"{name:14s} {strategy:10s} " + ("(kept from an earlier run) " if kept else f"n={row['n']} ")
                  + f"accuracy={row['accuracy']:.1%}"
                  + ("" if kept else f" pass 1 {row['first_pass_s']:.0f} s, pass 2 {row['second_pass_s']:.0f} s"),
                  flush=True)
            collect(out, record, task=name, category=category, strategy=strategy)
    return out


def two_pass(preset, session, experts, cls_expert, strategy: str, **options) -> Transformer2:
    """Returns the two-pass model of `strategy` over the session, read the preset's way (dispatch
    modes, CEM settings); `options` go to `Transformer2` (progress, answers)."""
    return Transformer2(session.svf, session.backend, experts, strategy=strategy, cls_expert=cls_expert,
                        dispatch_mode=preset.dispatch_mode, cls_dispatch_mode=preset.cls_dispatch_mode,
                        cem=preset.cem, **options)


def adaptation_record(result, ids: Sequence[str], name: str, category: str, strategy: str) -> dict:
    """Returns what is kept of one strategy's `TwoPassResult` on one task: its Table 2 row, the
    labels pass 1 gave, the per-question results and what pass 1 found."""
    return {"row": {"task": name, "category": category, "strategy": strategy, "n": len(ids),
                    "accuracy": round(result.accuracy, 4), "first_pass_s": round(result.first_pass_s, 1),
                    "second_pass_s": round(result.second_pass_s, 1), **official_accuracy(result.samples)},
            "labels": dict(Counter(result.labels)), "reused_answers": result.extra["reused_answers"],
            "ids": list(ids), "correct": [int(x.score.correct) for x in result.samples],
            "pass1": result.summary,
            # pass 2 through LoRA adapters (vLLM): each expert's rank and energy kept; absent in place
            **({"adapters": result.extra["adapters"]} if result.extra.get("adapters") else {})}


def collect(out: dict, record: dict, *, task: str, category: str, strategy: str) -> None:
    """Adds one (task, strategy) record to a `run_adaptation` result."""
    out["rows"].append(record["row"])
    out["per_question"].setdefault(task, {"ids": record["ids"]})[strategy] = record["correct"]
    if REGISTRY[strategy].dispatches_by_category:
        out["confusion"].setdefault(strategy, {})[category] = record["labels"]
    for key, value in record["pass1"].items():
        out.setdefault(key, {})[task] = value


def write_adaptation(result: dict, preset, *, started: float, name: str = "table2_adaptation",
                     config: dict | None = None, figures: bool = True) -> Path:
    """Writes `<name>.csv` and `<name>.json`, and with `figures` the confusion and α figures (another
    protocol's table passes False so as not to overwrite the preset's figures); returns the CSV path."""
    from t2lib.paths import figures_dir
    from t2lib.views.figures import adaptation_figures

    path = write_table(preset, name, result["rows"], table_columns(result["rows"], TABLE2_COLUMNS),
                       results=result, started=started, config=config)
    if figures:
        adaptation_figures(result, preset.suite_spec, figures_dir(preset.folder))
    return path


def score_lora_unseen(preset, *, progress: bool = True) -> dict:
    """Table 2's "+LoRA" row: each category's LoRA adapter (experts/<preset>/lora-<category>) on its
    unseen task, scored on the same questions as `run_adaptation`; returns {"rows", "per_question"}
    in its form (strategy "lora")."""
    folder = experts_dir(preset.expert_set, create=False)
    missing = [c for c in preset.suite_spec.unseen if not (folder / f"lora-{c}" / META_FILE).exists()]
    if missing:
        raise FileNotFoundError(f"no LoRA adapter for {', '.join(missing)} in {folder}: "
                                f"train them with `python -m t2lib lora {preset.cli_options} --task <training task>`")
    rows, per_question = [], {}
    for category, name in preset.suite_spec.unseen.items():
        adapter = LoRAAdapter.load(folder / f"lora-{category}")
        lora = lora_model(preset, adapter.settings)
        lora.load(adapter)
        backend = lora.backend(batch_size=preset.batch_size, max_batch_tokens=preset.max_batch_tokens,
                               progress=progress)
        task = preset.task(name, "test")
        _, scored = scored_questions(preset, name, task.ids)
        started = time.perf_counter()
        correct = score_questions(task, backend, scored, progress=progress)
        rows.append({"task": name, "category": category, "strategy": "lora", "n": len(scored),
                     "accuracy": round(sum(correct) / len(correct), 4), "first_pass_s": 0.0,
                     "second_pass_s": round(time.perf_counter() - started, 1)})
        per_question[name] = {"ids": list(scored), "lora": correct}
    return {"rows": rows, "per_question": per_question}


def format_rows(result: dict) -> str:
    """Returns a `run_adaptation` result's rows as text: accuracy and the seconds of each pass, per
    task and strategy (notebooks 03-05)."""
    return "\n".join(f"{r['task']:14s} {r['strategy']:10s} n={r['n']:4d}  accuracy {r['accuracy']:6.1%}  "
                     f"pass 1 {r['first_pass_s']:6.1f} s  pass 2 {r['second_pass_s']:6.1f} s" for r in result["rows"])


def live_answers(preset, session, strategy: str, result: dict, *, category: str = "math", count: int = 3) -> list[dict]:
    """Runs `strategy` now, both passes, on the first `count` scored questions of `category`'s unseen
    task, whatever `run_adaptation` kept; returns one row per question (label, answer, right or not,
    the seconds of each pass). Few-shot's pass 1 is one search per task: it reuses the α that
    search found on the task's shots (`result["alpha"]`) rather than searching again."""
    experts, cls_expert = load_expert_set(preset)
    name = preset.suite_spec.unseen[category]
    task = preset.task(name, "test")
    _, scored = scored_questions(preset, name, task.ids)
    t2 = two_pass(preset, session, experts, cls_expert, strategy, progress=False)
    if strategy == "few-shot":
        t2.strategy.reuse(result["alpha"][name], accuracy=result["cem"][name]["accuracy"])
    rows = []
    for sid in scored[:count]:
        request = task.request(sid)
        reply = t2.answer(request.prompt, sampling=request.sampling)
        rows.append({"task": name, "sample": sid, "label": reply.label, "answer": reply.text,
                     "correct": task.score(sid, reply.text).correct, "first_pass_s": round(reply.first_pass_s, 2),
                     "second_pass_s": round(reply.second_pass_s, 2)})
    return rows

