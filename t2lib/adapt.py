"""Adaptation on the unseen tasks (paper Table 2 and Table 3): every strategy of `t2lib.strategies`.

    python -m t2lib.adapt --preset tiny                 # what `make adapt` runs
    python -m t2lib.adapt --preset tiny --strategies base prompt

Every strategy is scored on the same samples: each unseen task's test split minus the few-shot
shots (drawn with a fixed seed; few-shot searches α on them and on nothing else). Writes
`table2_adaptation.csv` (accuracy, pass-1 and pass-2 seconds), `fig_dispatch_<strategy>.png`
(dispatch confusion matrices), `fig_fewshot_alpha.png` (the α found per task) and
`table2_adaptation.json` (rows, confusion counts, α, CEM history, run info) to the preset's figures
folder. Each finished (task, strategy) is kept in build/adapt/<preset>/ and reused on a rerun
(`--fresh` recomputes). Within a run, a sample that two strategies answer with the same weights
is generated once; its pass-2 seconds count for both (`Transformer2`'s `answers`).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import time
from collections import Counter
from dataclasses import asdict, replace
from pathlib import Path
from typing import Sequence

from t2lib.atomic import atomic_write_csv, atomic_write_json
from t2lib.cem import MIX_SPACES, OFFICIAL_SHOT_SEEDS
from t2lib.experts import Expert
from t2lib.fingerprint import fingerprint
from t2lib.paths import build_dir, experts_dir, figures_dir
from t2lib.presets import Preset, add_preset_arguments, preset_from_args
from t2lib.samples import draw_shots, spread_ids
from t2lib.strategies import REGISTRY, STRATEGIES
from t2lib.transformer2 import Transformer2

COLUMNS = ("task", "category", "strategy", "n", "accuracy", "first_pass_s", "second_pass_s")
RECORD_VERSION = 2  # a kept (task, strategy) result of another version is recomputed


def unseen_task(preset: Preset, name: str):
    """Returns the test split of an unseen task of the preset's suite."""
    return preset.task(name, "test")


def check_experts(preset: Preset, folder: Path | None = None, *, strategies: Sequence[str] = STRATEGIES) -> Path:
    """Returns the preset's expert folder after checking that the expert files the strategies
    need are there (before any model is loaded); raises FileNotFoundError naming the fix."""
    folder = folder or experts_dir(preset.expert_set, create=False)
    missing = [c for c in preset.suite_spec.categories if not (folder / f"{c}.safetensors").exists()]
    if missing:
        raise FileNotFoundError(f"no {', '.join(missing)} expert in {folder}: train them with "
                                f"`python -m t2lib.train --preset {preset.name} --all`")
    if "cls-expert" in strategies and not (folder / "classification.safetensors").exists():
        raise FileNotFoundError(f"the cls-expert strategy needs a classification expert in {folder}: "
                                f"`python -m t2lib.train --preset {preset.name} --task classification`")
    return folder


def load_experts(preset: Preset, folder: Path | None = None) -> tuple[dict[str, Expert], Expert | None]:
    """Returns the preset's category experts and its classification expert (None if absent)."""
    folder = check_experts(preset, folder, strategies=())
    experts = {c: Expert.load(folder / c) for c in preset.suite_spec.categories}
    cls_path = folder / "classification.safetensors"
    return experts, Expert.load(cls_path) if cls_path.exists() else None


def run_adaptation(preset: Preset, *, strategies: Sequence[str] = STRATEGIES, fresh: bool = False,
                   session=None, experts_folder: Path | None = None, progress: bool = True) -> dict:
    """Evaluates each strategy on each unseen task; returns {"rows", "confusion", "alpha", "cem",
    "per_question"}: per_question[task] holds the scored "ids" and, per strategy, 1/0 for each;
    confusion[strategy][category] counts the labels of strategies that route by category; every
    other key holds what a strategy's pass 1 found per task (few-shot: "alpha", "cem")."""
    from t2lib.session import Session

    unknown = [s for s in strategies if s not in REGISTRY]
    if unknown:
        raise ValueError(f"unknown strategies {unknown}; choose among {', '.join(STRATEGIES)}")
    check_experts(preset, experts_folder, strategies=strategies)
    session = session or Session(preset, progress=progress)
    preset = replace(preset, backend=session.backend_name)  # records and keys name the backend used
    experts, cls_expert = load_experts(preset, experts_folder)
    work = build_dir() / "adapt" / preset.name
    out = {"rows": [], "confusion": {}, "alpha": {}, "cem": {}, "per_question": {}}
    answers: dict = {}  # pass-2 answers shared by the strategies (Transformer2's `answers`)
    for category, name in preset.suite_spec.unseen.items():
        task = unseen_task(preset, name)
        shots, rest = draw_shots(task.ids, preset.cem.shots, seed=preset.cem.shot_seed(name))
        scored = spread_ids(rest, preset.eval_limit)
        for strategy in strategies:
            key = hashlib.blake2b(json.dumps([RECORD_VERSION, name, strategy, asdict(preset), str(session.lm.resolved.path),
                                              {c: fingerprint(e.z.items()) for c, e in experts.items()},
                                              cls_expert and fingerprint(cls_expert.z.items())], default=str).encode(),
                                  digest_size=8).hexdigest()
            done = work / f"{name}-{strategy}-{key}.json"
            record = json.loads(done.read_text()) if done.exists() and not fresh else None
            if record is not None and record.get("version") == RECORD_VERSION:
                print(f"{name:14s} {strategy:10s} (kept from an earlier run) {record['row']['accuracy']:.1%}")
            else:
                t2 = Transformer2(session.svf, session.backend, experts, strategy=strategy, cls_expert=cls_expert,
                                  dispatch_mode=preset.dispatch_mode, cls_dispatch_mode=preset.cls_dispatch_mode,
                                  cem=preset.cem, progress=progress, answers=answers)
                result = t2.evaluate(task, scored, shot_ids=shots)
                record = {"version": RECORD_VERSION, "row": {"task": name, "category": category, "strategy": strategy, "n": len(scored),
                                  "accuracy": round(result.accuracy, 4),
                                  "first_pass_s": round(result.first_pass_s, 1),
                                  "second_pass_s": round(result.second_pass_s, 1),
                                  **official_accuracy(result.samples)},
                          "labels": dict(Counter(result.labels)),
                          "reused_answers": result.extra["reused_answers"],
                          "ids": list(scored), "correct": [int(x.score.correct) for x in result.samples],
                          "pass1": result.summary}
                atomic_write_json(done, record)
                row = record["row"]
                print(f"{name:14s} {strategy:10s} n={row['n']} accuracy={row['accuracy']:.1%} "
                      f"pass 1 {row['first_pass_s']:.0f} s, pass 2 {row['second_pass_s']:.0f} s", flush=True)
            out["rows"].append(record["row"])
            out["per_question"].setdefault(name, {"ids": record["ids"]})[strategy] = record["correct"]
            if REGISTRY[strategy].routes_by_category:
                out["confusion"].setdefault(strategy, {})[category] = record["labels"]
            for key, value in record["pass1"].items():
                out.setdefault(key, {})[name] = value
    return out


def official_accuracy(samples) -> dict:
    """Returns {"accuracy_official": ...} where the task scored `samples` the official way too, else {}."""
    verdicts = [s.official for s in samples if s.official is not None]
    return {"accuracy_official": round(sum(verdicts) / len(verdicts), 4)} if verdicts and len(verdicts) == len(samples) else {}


def table_columns(rows: Sequence[dict], columns: Sequence[str]) -> tuple[str, ...]:
    """Returns `columns`, plus "accuracy_official" when every row has it (paper tasks)."""
    official = bool(rows) and all("accuracy_official" in r for r in rows)
    return (*columns, "accuracy_official") if official else tuple(columns)


def write_outputs(result: dict, preset: Preset, *, started: float, name: str = "table2_adaptation",
                  config: dict | None = None, figures: bool = True) -> Path:
    """Writes `<name>.csv` and `<name>.json`, and with `figures` the confusion and α figures (another
    protocol's table passes False so as not to overwrite the preset's figures); returns the CSV path."""
    from t2lib.figures import adaptation_figures
    from t2lib.runinfo import write_results

    folder = figures_dir(preset.name)
    path = folder / f"{name}.csv"
    atomic_write_csv(path, result["rows"], table_columns(result["rows"], COLUMNS))
    if figures:
        adaptation_figures(result, preset.suite_spec, folder)
    write_results(folder / f"{name}.json", result, preset=preset, config=config, started=started)
    return path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Adaptation strategies on the unseen tasks (Table 2).")
    add_preset_arguments(parser)
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=STRATEGIES)
    parser.add_argument("--fresh", action="store_true", help="recompute results kept from earlier runs")
    parser.add_argument("--shot-seeds", choices=("kit", "official"), default="kit",
                        help="draw each task's few-shot shots with the preset's seed (kit) or with the official "
                             "script's per-task seeds (MATH 27, HumanEval 16, ARC-Challenge 38)")
    parser.add_argument("--alpha", choices=("expert", "layer", "matrix"),
                        help="few-shot mixing weights: one per expert, per expert and layer, or per expert and "
                             "target matrix (the official script); default: the preset's")
    parser.add_argument("--mix-space", choices=MIX_SPACES,
                        help="mix the experts' stored vectors z (the paper's formula, the official code) or the "
                             "scales they apply to σ; default: the preset's (z)")
    args = parser.parse_args(argv)
    preset = preset_from_args(args)
    cem, protocol = preset.cem, []
    if args.shot_seeds == "official":
        cem, protocol = replace(cem, shot_seeds=OFFICIAL_SHOT_SEEDS), protocol + ["official-shots"]
    if args.alpha:
        cem = replace(cem, per_matrix=args.alpha == "matrix", per_layer=args.alpha == "layer")
        protocol.append(f"alpha-per-{args.alpha}")
    if args.mix_space:
        cem = replace(cem, mix_space=args.mix_space)
        protocol.append(f"mix-{args.mix_space}")
    if preset.arc_cot_prefix:
        protocol.append("arc-cot")
    preset = replace(preset, cem=cem)
    try:
        check_experts(preset, strategies=args.strategies)
    except FileNotFoundError as err:
        parser.error(str(err))
    started = time.time()
    result = run_adaptation(preset, strategies=args.strategies, fresh=args.fresh)
    # Another protocol writes its own table, beside the preset's own (not over it).
    path = write_outputs(result, preset, started=started,
                         name="table2_adaptation" + "".join(f"_{p}" for p in protocol), figures=not protocol)
    print(f"wrote {path} in {time.time() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
