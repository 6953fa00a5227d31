"""Table 4 at the preset's scale (`make ablations`): objective × target set × method, trained on the
math training task and scored on its test split and on the unseen math task.

    python -m t2lib.ablations --preset tiny          # what `make ablations` runs (resumable)
    python -m t2lib.ablations --preset smoke --rows svf-pg-mlp lora-nt-attn

Rows, as in the paper's Table 4 (Llama-3-8B, GSM8K / MATH):

| row | method | objective | matrices |
|---|---|---|---|
| svf-pg-mlp | SVF | policy gradient | MLP (the kit's experts) |
| svf-pg-attn | SVF | policy gradient | attention q, v |
| svf-pg-mlp+attn | SVF | policy gradient | MLP and q, v |
| svf-nt-attn | SVF | next-token | q, v |
| lora-pg-attn | LoRA r 16 | policy gradient | q, v |
| lora-nt-attn | LoRA r 16 | next-token | q, v |
| lora-nt-mlp+attn | LoRA r 16 | next-token | MLP and q, v |

Every row uses the preset's training settings for that task (steps, batch, evaluation) with its
objective; SVF rows keep the preset's learning rate, LoRA rows take `LORA_LR` with gradient-norm
clipping at 1 (one rate, not the Table 1 sweep, to keep the grid in the time budget). Each finished
row is kept in build/ablations/<preset>/<row>.json with its per-question results, trainable
parameter count and training time, and reused by a rerun; training itself resumes from its
checkpoint. Results: figures[/<preset>]/table4_ablations.csv and .json (run info), with the
paper's numbers beside (`t2lib.paper.TABLE4`).
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Sequence

from t2lib.atomic import atomic_write_csv, atomic_write_json
from t2lib.paths import build_dir, figures_dir
from t2lib.presets import Preset, add_preset_arguments, preset_from_args

RECORD_VERSION = 1
LORA_LR = 5e-4  # the top of the paper's LoRA sweep
COLUMNS = ("row", "method", "objective", "targets", "params", "train_task", "train_accuracy", "train_low", "train_high",
           "train_gain", "train_gain_low", "train_gain_high", "unseen_task", "unseen_accuracy", "unseen_low",
           "unseen_high", "unseen_gain", "unseen_gain_low", "unseen_gain_high", "n_train", "n_unseen",
           "train_seconds", "paper_train", "paper_unseen", "paper_params")


@dataclass(frozen=True)
class Ablation:
    """One row of Table 4."""
    row: str
    method: str  # "svf" | "lora"
    objective: str  # "policy_gradient" | "next_token"
    targets: str  # a t2lib.svd target set


ROWS = (Ablation("svf-pg-mlp", "svf", "policy_gradient", "mlp"),
        Ablation("svf-pg-attn", "svf", "policy_gradient", "attn"),
        Ablation("svf-pg-mlp+attn", "svf", "policy_gradient", "mlp+attn"),
        Ablation("svf-nt-attn", "svf", "next_token", "attn"),
        Ablation("lora-pg-attn", "lora", "policy_gradient", "attn"),
        Ablation("lora-nt-attn", "lora", "next_token", "attn"),
        Ablation("lora-nt-mlp+attn", "lora", "next_token", "mlp+attn"))
BY_NAME = {a.row: a for a in ROWS}


def _tasks(preset: Preset):
    suite = preset.suite_spec
    train_name, unseen_name = suite.training["math"], suite.unseen["math"]
    return (preset.task(train_name, "train"), preset.task(train_name, "validation"), preset.task(train_name, "test"),
            preset.task(unseen_name, "test"))


def _score(task, backend, config, limit, progress) -> list[int]:
    from t2lib.reinforce import evaluation_sampling
    from t2lib.samples import spread_ids

    done = task.evaluate(backend, sample_ids=spread_ids(task.ids, limit), sampling=evaluation_sampling(config, task),
                         progress=progress)
    return [int(s.score.correct) for s in done.samples]


def _base_scores(preset: Preset, compute) -> list[list[int]]:
    """Returns the base model's per-question results on both tasks, computed once per preset
    (build/ablations/<preset>/base.json) and shared by every row."""
    path = build_dir() / "ablations" / preset.name / "base.json"
    if path.exists():
        record = json.loads(path.read_text())
        if record.get("version") == RECORD_VERSION:
            return record["scored"]
    scored = compute()
    atomic_write_json(path, {"version": RECORD_VERSION, "scored": scored})
    return scored


def run_row(preset: Preset, ablation: Ablation, *, fresh: bool = False, progress: bool = True) -> dict:
    """Trains (or resumes) one row and scores it and the base model; returns its record."""
    from t2lib.lora import LoRAModel, LoRASettings, LoRATrainer
    from t2lib.reinforce import ReinforceTrainer
    from t2lib.session import Session

    train, validation, test, unseen = _tasks(preset)
    run_dir = build_dir() / "ablations" / preset.name / ablation.row
    config = replace(preset.train_config(train.name), objective=ablation.objective)
    scored = {}
    if ablation.method == "svf":
        session = Session(replace(preset, targets=ablation.targets), progress=progress)
        trainer = ReinforceTrainer(session.svf, session.backend, train, config=config, run_dir=run_dir,
                                   validation=validation, name=ablation.row, progress=progress,
                                   grad_backend=session.grad_backend)
        result = trainer.train(fresh=fresh)
        with session.svf.using(None):
            scored["base"] = _base_scores(preset, lambda: [_score(t, session.backend, config, preset.eval_limit, progress)
                                                           for t in (test, unseen)])
        with session.svf.using(result.expert):
            scored["tuned"] = [_score(t, session.backend, config, preset.eval_limit, progress) for t in (test, unseen)]
        params = result.expert.num_params
    else:
        config = replace(config, lr=LORA_LR, grad_clip=1.0, kl_coef=0.0, grad_dtype=None)
        lm = preset.load_model()
        lora = LoRAModel(lm.model, lm.tokenizer, LoRASettings(targets=ablation.targets), model_id=preset.model)
        trainer = LoRATrainer(lora, train, config=config, run_dir=run_dir, validation=validation, name=ablation.row,
                              progress=progress, batch_size=preset.batch_size)
        result = trainer.train(fresh=fresh)
        lora.load(result.expert)
        with lora.disabled():
            scored["base"] = _base_scores(preset, lambda: [_score(t, trainer.backend, config, preset.eval_limit, progress)
                                                           for t in (test, unseen)])
        scored["tuned"] = [_score(t, trainer.backend, config, preset.eval_limit, progress) for t in (test, unseen)]
        params = result.expert.num_params
    return {"version": RECORD_VERSION, "ablation": asdict(ablation), "params": params,
            "train_seconds": round(result.train_seconds, 1), "best_step": result.best_step,
            "config": asdict(config), "tasks": [test.name, unseen.name], "scored": scored}


def run_ablations(preset: Preset, rows: Sequence[str] = tuple(BY_NAME), *, fresh: bool = False,
                  progress: bool = True) -> list[dict]:
    """Runs the rows (each kept in build/ablations/<preset>/<row>.json and reused unless `fresh`);
    returns their records."""
    records = []
    for name in rows:
        ablation = BY_NAME[name]
        done = build_dir() / "ablations" / preset.name / f"{name}.json"
        record = json.loads(done.read_text()) if done.exists() and not fresh else None
        if record is None or record.get("version") != RECORD_VERSION or record["ablation"] != asdict(ablation):
            started = time.time()
            record = run_row(preset, ablation, fresh=fresh, progress=progress)
            atomic_write_json(done, record)
            print(f"{name:18s} done in {time.time() - started:.0f} s", flush=True)
        else:
            print(f"{name:18s} (kept from an earlier run)", flush=True)
        records.append(record)
    return records


def _scores(prefix: str, correct: Sequence[int], base: Sequence[int]) -> dict:
    """Accuracy (%) with its Wilson interval, and the paired-bootstrap gain over the base (points)."""
    from t2lib.paper import paired_interval, wilson_interval

    n, p = len(correct), sum(correct) / len(correct)
    low, high = wilson_interval(p, n)
    out = {f"{prefix}_accuracy": round(100 * p, 2), f"{prefix}_low": round(100 * low, 2),
           f"{prefix}_high": round(100 * high, 2)}
    if correct is base:
        return {**out, f"{prefix}_gain": "", f"{prefix}_gain_low": "", f"{prefix}_gain_high": ""}
    gain_low, gain_high = paired_interval(base, correct)
    return {**out, f"{prefix}_gain": round(100 * (p - sum(base) / len(base)), 2),
            f"{prefix}_gain_low": round(100 * gain_low, 2), f"{prefix}_gain_high": round(100 * gain_high, 2)}


def table_rows(records: Sequence[dict]) -> list[dict]:
    """Returns the table's rows: the base model once (from the first record), then each ablation;
    accuracies in % with 95% Wilson intervals, gains over the base paired (bootstrap over questions)."""
    from t2lib.paper import TABLE4

    out = []
    for i, r in enumerate(records):
        a = r["ablation"]
        (test_base, unseen_base), (test, unseen) = r["scored"]["base"], r["scored"]["tuned"]
        common = {"train_task": r["tasks"][0], "unseen_task": r["tasks"][1], "n_train": len(test_base),
                  "n_unseen": len(unseen_base)}
        if i == 0:
            out.append({"row": "base", "method": "-", "objective": "-", "targets": "-", "params": 0, **common,
                        **_scores("train", test_base, test_base), **_scores("unseen", unseen_base, unseen_base),
                        "train_seconds": 0, "paper_train": TABLE4["base"][0], "paper_unseen": TABLE4["base"][1],
                        "paper_params": 0})
        paper = TABLE4.get(a["row"], (None, None, None))
        out.append({"row": a["row"], "method": a["method"], "objective": a["objective"], "targets": a["targets"],
                    "params": r["params"], **common, **_scores("train", test, test_base),
                    **_scores("unseen", unseen, unseen_base), "train_seconds": r["train_seconds"],
                    "paper_train": paper[0], "paper_unseen": paper[1], "paper_params": paper[2]})
    return out


def write_outputs(records: Sequence[dict], preset: Preset, *, started: float):
    from t2lib.runinfo import write_results

    folder = figures_dir(preset.name)
    path = folder / "table4_ablations.csv"
    atomic_write_csv(path, table_rows(records), COLUMNS)
    write_results(folder / "table4_ablations.json", {"rows": table_rows(records), "records": list(records)},
                  preset=preset, started=started)
    return path


TABLE5_COLUMNS = ("category", "expert", "source_model", "task", "n", "base_accuracy", "ordered_accuracy", "shuffled_accuracy")


def run_shuffle_control(preset: Preset, *, seed: int = 0, fresh: bool = False, progress: bool = True,
                        transfer_from: Path | None = None) -> list[dict]:
    """Table 5's control at the preset's scale: each category's expert on its unseen task, with its
    z as trained ("ordered") and permuted within each matrix ("shuffled", `t2lib.experts.shuffled`),
    against the base model, on the same questions. Kept in build/ablations/<preset>/table5.json.

    `transfer_from`: a folder of category experts trained on another base model with the same
    target shapes (the paper's Llama-3-8B experts on Mistral-7B-Instruct-v0.3); each is applied to
    the preset's model through `Expert.transferred_to`, the explicit opt-in past the weights check.
    Each row then names the expert's source model; kept in table5-transfer.json."""
    from t2lib.adapt import check_experts, load_experts
    from t2lib.experts import Expert, shuffled
    from t2lib.reinforce import evaluation_sampling
    from t2lib.samples import spread_ids
    from t2lib.session import Session

    if transfer_from is not None:
        transfer_from = Path(transfer_from)
        missing = [c for c in preset.suite_spec.categories if not (transfer_from / f"{c}.safetensors").exists()]
        if missing:
            raise FileNotFoundError(f"--transfer-from {transfer_from}: no {', '.join(missing)} expert there; "
                                    "name the folder of another model's experts (e.g. experts/paper)")
        sources = {c: Expert.load(transfer_from / c) for c in preset.suite_spec.categories}  # verified
        key = {c: e.base_fingerprint for c, e in sources.items()}
    else:
        check_experts(preset, strategies=())
        key = None
    path = build_dir() / "ablations" / preset.name / ("table5-transfer.json" if transfer_from else "table5.json")
    if path.exists() and not fresh:
        record = json.loads(path.read_text())
        if record.get("version") == RECORD_VERSION and record.get("seed") == seed and record.get("source") == key:
            return record["rows"]
    session = Session(preset, progress=progress)
    if transfer_from is not None:
        experts = {c: e.transferred_to(session.svf.decomp, model_id=preset.model) for c, e in sources.items()}
    else:
        experts, _ = load_experts(preset)
    rows = []
    for category, name in preset.suite_spec.unseen.items():
        task = preset.task(name, "test")
        ids = spread_ids(task.ids, preset.eval_limit)
        sampling = evaluation_sampling(preset.train_config(preset.suite_spec.training[category]), task)
        row = {"category": category, "expert": experts[category].name, "task": name, "ids": list(ids),
               "source_model": (experts[category].config.get("transferred_from") or {}).get(
                   "base_model", experts[category].base_model)}
        for label, expert in (("base", None), ("ordered", experts[category]),
                              ("shuffled", shuffled(experts[category], seed=seed))):
            with session.svf.using(expert):
                done = task.evaluate(session.backend, sample_ids=ids, sampling=sampling, progress=progress)
            row[label] = [int(x.score.correct) for x in done.samples]
        rows.append(row)
    atomic_write_json(path, {"version": RECORD_VERSION, "seed": seed, "source": key, "rows": rows})
    return rows


def table5_rows(rows: Sequence[dict]) -> list[dict]:
    return [{"category": r["category"], "expert": r["expert"], "source_model": r.get("source_model", ""),
             "task": r["task"], "n": len(r["ids"]),
             **{f"{k}_accuracy": round(sum(r[k]) / len(r[k]), 4) for k in ("base", "ordered", "shuffled")}}
            for r in rows]


def learning_curves(preset: Preset) -> list[dict]:
    """The paper's training curves at the preset's scale: for each category's training task, the
    validation accuracy at each evaluation of the SVF expert's run and of the LoRA adapter's (Table
    1's, `python -m t2lib.lora`), from the metrics each one keeps (loaded and verified), with the
    base model's validation accuracy. Rows: {category, task, method ("svf" | "lora"), name, base,
    steps, accuracy (per evaluation), best_step}; a method with no trained file is left out."""
    from t2lib.experts import Expert
    from t2lib.lora import LoRAAdapter
    from t2lib.paths import experts_dir

    folder = experts_dir(preset.expert_set, create=False)
    rows = []
    for category, task in preset.suite_spec.training.items():
        for method, path, load in (("svf", folder / f"{category}.safetensors", Expert.load),
                                   ("lora", folder / f"lora-{category}", LoRAAdapter.load)):
            if not path.exists():
                continue
            trained = load(path)
            evals = trained.metrics.get("evals") or []
            if not evals:
                raise ValueError(f"{path} keeps no validation curve (metrics['evals']): retrain it with this kit")
            rows.append({"category": category, "task": task, "method": method, "name": trained.name,
                         "base": trained.metrics["val_base_accuracy"], "best_step": trained.metrics.get("best_step"),
                         "steps": [e["step"] for e in evals], "accuracy": [e["accuracy"] for e in evals]})
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Table 4: objective x target set x method (resumable).")
    add_preset_arguments(parser)
    parser.add_argument("--rows", nargs="+", choices=tuple(BY_NAME), default=list(BY_NAME))
    parser.add_argument("--fresh", action="store_true", help="recompute rows kept from earlier runs")
    parser.add_argument("--shuffle-control", action="store_true",
                        help="Table 5's control instead: each expert on its unseen task, z ordered and shuffled")
    parser.add_argument("--transfer-from", type=Path, metavar="FOLDER",
                        help="with --shuffle-control: apply the category experts in FOLDER, trained on another "
                             "base model with the same target shapes, to this one (Table 5's transfer)")
    args = parser.parse_args(argv)
    if args.transfer_from is not None and not args.shuffle_control:
        parser.error("--transfer-from goes with --shuffle-control (Table 5)")
    preset = preset_from_args(args)
    started = time.time()
    if args.shuffle_control:
        from t2lib.experts import ExpertMismatchError
        from t2lib.runinfo import write_results

        try:
            rows = run_shuffle_control(preset, fresh=args.fresh, transfer_from=args.transfer_from)
        except (FileNotFoundError, ExpertMismatchError) as e:
            parser.error(str(e))
        folder = figures_dir(preset.name)
        stem = "table5_transfer" if args.transfer_from else "table5_shuffled_sigma"
        atomic_write_csv(folder / f"{stem}.csv", table5_rows(rows), TABLE5_COLUMNS)
        write_results(folder / f"{stem}.json", {"rows": table5_rows(rows), "per_question": rows},
                      preset=preset, started=started)
        for r in table5_rows(rows):
            print(f"{r['task']:14s} base {r['base_accuracy']:.1%}  ordered {r['ordered_accuracy']:.1%}  "
                  f"shuffled {r['shuffled_accuracy']:.1%}  (n={r['n']})", flush=True)
        return 0
    if preset.backend != "hf":
        parser.error("--backend: the LoRA rows generate with their own HF model; run the grid with --backend hf")
    records = run_ablations(preset, args.rows, fresh=args.fresh)
    print(f"wrote {write_outputs(records, preset, started=started)} in {time.time() - started:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
