"""Adaptation on the unseen tasks (paper Table 2 and Table 3): base, prompt, cls-expert, few-shot.

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
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

import torch

from t2lib.atomic import atomic_write_csv, atomic_write_json
from t2lib.cem import draw_shots
from t2lib.experts import Expert
from t2lib.fingerprint import fingerprint
from t2lib.paths import build_dir, experts_dir, figures_dir
from t2lib.presets import Preset, get_preset
from t2lib.reinforce import spread_ids
from t2lib.transformer2 import STRATEGIES, Transformer2

COLUMNS = ("task", "category", "strategy", "n", "accuracy", "first_pass_s", "second_pass_s")
CATEGORIES = ("math", "code", "reasoning")
UNSEEN = {"tiny": {"math": "sub_word", "code": "fn_string", "reasoning": "where_crowd"},
          "paper": {"math": "math", "code": "humaneval", "reasoning": "arc_challenge"}}


def unseen_task(preset: Preset, name: str):
    """Returns the test split of an unseen task of the preset's suite."""
    if preset.suite == "tiny":
        from fishfarm.tiny import tiny_task
        return tiny_task(name, "test")
    from fishfarm.paper_tasks import paper_task
    return paper_task(name, "test", max_new_tokens=preset.paper_max_new_tokens)


def load_experts(preset: Preset, folder: Path | None = None) -> tuple[dict[str, Expert], Expert | None]:
    """Returns the preset's category experts and its classification expert (None if absent)."""
    folder = folder or experts_dir(preset.experts)
    missing = [c for c in CATEGORIES if not (folder / f"{c}.safetensors").exists()]
    if missing:
        raise FileNotFoundError(f"no {', '.join(missing)} expert in {folder}: train them with "
                                f"`python -m t2lib.train --preset {preset.name} --all`")
    experts = {c: Expert.load(folder / c) for c in CATEGORIES}
    cls_path = folder / "classification.safetensors"
    return experts, Expert.load(cls_path) if cls_path.exists() else None


def run_adaptation(preset: Preset, *, strategies: Sequence[str] = STRATEGIES, fresh: bool = False,
                   session=None, experts_folder: Path | None = None, progress: bool = True) -> dict:
    """Evaluates each strategy on each unseen task; returns {"rows", "confusion", "alpha", "cem",
    "per_question"}: per_question[task] holds the scored "ids" and, per strategy, 1/0 for each."""
    from t2lib.train import Session

    session = session or Session(preset, progress=progress)
    experts, cls_expert = load_experts(preset, experts_folder)
    if "cls-expert" in strategies and cls_expert is None:
        raise FileNotFoundError("the cls-expert strategy needs a classification expert: "
                                f"`python -m t2lib.train --preset {preset.name} --task classification`")
    work = build_dir() / "adapt" / preset.name
    out = {"rows": [], "confusion": {}, "alpha": {}, "cem": {}, "per_question": {}}
    answers: dict = {}  # pass-2 answers shared by the strategies (Transformer2's `answers`)
    for category, name in UNSEEN[preset.suite].items():
        task = unseen_task(preset, name)
        shots, rest = draw_shots(task.ids, preset.cem.shots, seed=preset.cem.seed)
        scored = spread_ids(rest, preset.eval_limit)
        for strategy in strategies:
            key = hashlib.blake2b(json.dumps([name, strategy, asdict(preset), str(session.lm.resolved.path),
                                              {c: fingerprint(e.z.items()) for c, e in experts.items()},
                                              cls_expert and fingerprint(cls_expert.z.items())], default=str).encode(),
                                  digest_size=8).hexdigest()
            done = work / f"{name}-{strategy}-{key}.json"
            record = json.loads(done.read_text()) if done.exists() and not fresh else None
            if record is not None and "correct" in record:  # older records lack per-question results
                print(f"{name:14s} {strategy:10s} (kept from an earlier run) {record['row']['accuracy']:.1%}")
            else:
                t2 = Transformer2(session.svf, session.backend, experts, strategy=strategy, cls_expert=cls_expert,
                                  dispatch_mode=preset.dispatch_mode, cls_dispatch_mode=preset.cls_dispatch_mode,
                                  cem=preset.cem, progress=progress, answers=answers)
                result = t2.evaluate(task, scored, shot_ids=shots)
                record = {"row": {"task": name, "category": category, "strategy": strategy, "n": len(scored),
                                  "accuracy": round(result.accuracy, 4),
                                  "first_pass_s": round(result.first_pass_s, 1),
                                  "second_pass_s": round(result.second_pass_s, 1)},
                          "labels": dict(Counter(result.labels)),
                          "reused_answers": result.extra["reused_answers"],
                          "ids": list(scored), "correct": [int(x.score.correct) for x in result.samples],
                          "alpha": result.cem.alpha.tolist() if result.cem else None,
                          "cem": {"accuracy": result.cem.accuracy, "history": result.cem.history,
                                  "evaluations": result.cem.evaluations} if result.cem else None}
                atomic_write_json(done, record)
                row = record["row"]
                print(f"{name:14s} {strategy:10s} n={row['n']} accuracy={row['accuracy']:.1%} "
                      f"pass 1 {row['first_pass_s']:.0f} s, pass 2 {row['second_pass_s']:.0f} s", flush=True)
            out["rows"].append(record["row"])
            out["per_question"].setdefault(name, {"ids": record["ids"]})[strategy] = record["correct"]
            if strategy in ("prompt", "cls-expert"):
                out["confusion"].setdefault(strategy, {})[category] = record["labels"]
            if record["alpha"] is not None:
                out["alpha"][name] = record["alpha"]
                out["cem"][name] = record["cem"]
    return out


def write_outputs(result: dict, preset: Preset, *, started: float, name: str = "table2_adaptation",
                  config: dict | None = None) -> Path:
    """Writes `<name>.csv`, the confusion and α figures and `<name>.json`; returns the CSV path."""
    from t2lib.runinfo import write_results

    folder = figures_dir(preset.name)
    path = folder / f"{name}.csv"
    atomic_write_csv(path, result["rows"], COLUMNS)
    draw_figures(result, preset, folder)
    write_results(folder / f"{name}.json", result, preset=preset, config=config, started=started)
    return path


def draw_figures(result: dict, preset: Preset, folder: Path) -> list[Path]:
    """Draws the dispatch confusion matrices and the few-shot α of a `run_adaptation` result
    into `folder` (fig_dispatch_<strategy>.png, fig_fewshot_alpha.png); returns their paths."""
    from t2lib import plots

    labels = ("code", "math", "reasoning", "other")
    paths = []
    for strategy, by_gold in result["confusion"].items():
        counts = torch.tensor([[by_gold.get(g, {}).get(p, 0) for p in labels] for g in CATEGORIES])
        fig = plots.plot_confusion(counts, rows=[f"{UNSEEN[preset.suite][g]} ({g})" for g in CATEGORIES],
                                   cols=labels, title=f"Dispatch on unseen tasks: {strategy}")
        paths.append(plots.save_figure(fig, folder / f"fig_dispatch_{strategy}.png"))
    if result["alpha"]:
        fig = plots.plot_alpha({t: torch.tensor(a) for t, a in result["alpha"].items()}, experts=CATEGORIES)
        paths.append(plots.save_figure(fig, folder / "fig_fewshot_alpha.png"))
    return paths


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Adaptation strategies on the unseen tasks (Table 2).")
    parser.add_argument("--preset", default="tiny", help="smoke | tiny | paper (default: tiny)")
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=STRATEGIES)
    parser.add_argument("--fresh", action="store_true", help="recompute results kept from earlier runs")
    args = parser.parse_args(argv)
    preset = get_preset(args.preset)
    started = time.time()
    result = run_adaptation(preset, strategies=args.strategies, fresh=args.fresh)
    path = write_outputs(result, preset, started=started)
    print(f"wrote {path} in {time.time() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
