"""Table 4 at the preset's scale: objective × target set × method, trained on the math training
task and scored on its test split and on the unseen math task.

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
row is kept (`t2lib.runs.store`, build/ablations/<preset>/) with its per-question results,
trainable parameter count and training time, and reused by a rerun; training itself resumes from
its checkpoint in build/ablations/<preset>/<row>/. The base model's results are computed once and
shared by every row.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Sequence

from t2lib.locks import owning_all
from t2lib.methods.lora import LoRASettings, LoRAParams
from t2lib.methods.reinforce import ReinforceTrainer, evaluation_sampling
from t2lib.methods.trainable import SVFParams
from t2lib.paths import build_dir
from t2lib.presets import Preset
from t2lib.runs.scoring import score_questions
from t2lib.runs.store import ResultStore
from t2lib.runs.tables import write_table
from t2lib.runs.training import data_version, lora_model
from t2lib.samples import spread_ids

RECORD_VERSION = 2
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
    targets: str  # a t2lib.core.svd target set


ROWS = (Ablation("svf-pg-mlp", "svf", "policy_gradient", "mlp"),
        Ablation("svf-pg-attn", "svf", "policy_gradient", "attn"),
        Ablation("svf-pg-mlp+attn", "svf", "policy_gradient", "mlp+attn"),
        Ablation("svf-nt-attn", "svf", "next_token", "attn"),
        Ablation("lora-pg-attn", "lora", "policy_gradient", "attn"),
        Ablation("lora-nt-attn", "lora", "next_token", "attn"),
        Ablation("lora-nt-mlp+attn", "lora", "next_token", "mlp+attn"))
BY_NAME = {a.row: a for a in ROWS}


def _tasks(preset: Preset):
    suite = preset.suite_spec  # the math category (paper Table 4), else a suite file's first with an unseen task
    category = next((c for c in ("math", *suite.categories) if c in suite.unseen), None)
    if category is None:
        raise ValueError(f"the {suite.name} suite has no unseen task: Table 4 scores the expert on one")
    train_name, unseen_name = suite.training[category], suite.unseen[category]
    return (preset.task(train_name, "train"), preset.task(train_name, "validation"), preset.task(train_name, "test"),
            preset.task(unseen_name, "test"))


def _trainer(preset: Preset, ablation: Ablation, config, train, validation, *, progress: bool) -> ReinforceTrainer:
    """Returns the row's trainer: SVF on the preset's session with the row's targets, or LoRA on a
    model of its own."""
    from t2lib.session import Session

    run_dir = row_folder(preset, ablation.row)
    if ablation.method == "svf":
        session = Session(replace(preset, targets=ablation.targets), progress=progress)
        return ReinforceTrainer(SVFParams(session.svf), session.backend, train, config=config, run_dir=run_dir,
                                validation=validation, name=ablation.row, progress=progress,
                                grad_backend=session.grad_backend, data_version=data_version(preset))
    lora = lora_model(preset, LoRASettings(targets=ablation.targets))
    config = replace(config, lr=LORA_LR, grad_clip=1.0, kl_coef=0.0, grad_dtype=None)
    return ReinforceTrainer(LoRAParams(lora), lora.backend(batch_size=preset.batch_size), train, config=config,
                            run_dir=run_dir, validation=validation, name=ablation.row, progress=progress,
                            data_version=data_version(preset))


def run_row(preset: Preset, ablation: Ablation, store: ResultStore, *, fresh: bool = False,
            progress: bool = True) -> dict:
    """Trains (or resumes) one row and scores it and the base model; returns its record."""
    train, validation, test, unseen = _tasks(preset)
    config = replace(preset.train_config(train.name), objective=ablation.objective)
    trainer = _trainer(preset, ablation, config, train, validation, progress=progress)
    result = trainer.train(fresh=fresh)

    def scores() -> list[list[int]]:
        return [score_questions(t, trainer.backend, spread_ids(t.ids, preset.eval_limit),
                                sampling=evaluation_sampling(trainer.config, t), progress=progress)
                for t in (test, unseen)]
    with trainer.trained.using(None):
        base, _ = store.fetch("base", [asdict(preset), test.name, unseen.name], scores)
    with trainer.trained.using(result.expert):
        tuned = scores()
    return {"ablation": asdict(ablation), "params": result.expert.num_params,
            "train_seconds": round(result.train_seconds, 1), "best_step": result.best_step,
            "config": asdict(trainer.config), "tasks": [test.name, unseen.name],
            "scored": {"base": base, "tuned": tuned}}


def row_folder(preset: Preset, row: str) -> Path:
    """Returns the run folder of an ablation row (build/ablations/<preset>/<row>)."""
    return build_dir() / "ablations" / preset.folder / row


def run_ablations(preset: Preset, rows: Sequence[str] = tuple(BY_NAME), *, fresh: bool = False,
                  progress: bool = True) -> list[dict]:
    """Runs the rows (each kept and reused unless `fresh`); returns their records.

    Raises:
        FolderBusyError: at once, before any model loads, when another process holds a row's folder.
    """
    with owning_all([row_folder(preset, name) for name in rows], what="Table 4 ablation rows"):
        return _run_rows(preset, rows, fresh=fresh, progress=progress)


def _run_rows(preset: Preset, rows: Sequence[str], *, fresh: bool, progress: bool) -> list[dict]:
    """`run_ablations`' work, with the rows' folders held."""
    store = ResultStore("ablations", preset.folder, version=RECORD_VERSION)
    records = []
    for name in rows:
        ablation = BY_NAME[name]
        started = time.time()
        record, kept = store.fetch(name, [asdict(preset), asdict(ablation)],
                                   lambda: run_row(preset, ablation, store, fresh=fresh, progress=progress),
                                   fresh=fresh)
        print(f"{name:18s} " + ("(kept from an earlier run)" if kept else f"done in {time.time() - started:.0f} s"),
              flush=True)
        records.append(record)
    return records


def _scores(prefix: str, correct: Sequence[int], base: Sequence[int]) -> dict:
    """Accuracy (%) with its Wilson interval, and the paired-bootstrap gain over the base (points)."""
    from t2lib.views.paper import paired_interval, wilson_interval

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
    from t2lib.views.paper import TABLE4

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


def write_ablations(records: Sequence[dict], preset: Preset, *, started: float):
    """Writes table4_ablations.csv and its JSON (rows, records, run info); returns the CSV path."""
    rows = table_rows(records)
    return write_table(preset, "table4_ablations", rows, COLUMNS, results={"rows": rows, "records": list(records)},
                       started=started)
