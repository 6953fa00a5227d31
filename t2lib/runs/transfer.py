"""Table 5 at the preset's scale: each category's expert on its unseen task with its z as trained
("ordered") and permuted within each matrix ("shuffled σ"), and, with `transfer_from`, experts
trained on another base model applied to this one (the paper's Llama-3-8B experts on Mistral-7B).
Kept (`t2lib.runs.store`, build/ablations/<preset>/) and reused by a rerun."""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Sequence

from t2lib.core.experts import Expert, shuffled
from t2lib.methods.reinforce import evaluation_sampling
from t2lib.presets import Preset
from t2lib.runs.expert_sets import check_expert_set, load_expert_set
from t2lib.runs.scoring import score_questions
from t2lib.runs.store import ResultStore
from t2lib.runs.tables import write_table
from t2lib.samples import spread_ids

RECORD_VERSION = 2

TABLE5_COLUMNS = ("category", "expert", "source_model", "task", "n", "base_accuracy", "ordered_accuracy", "shuffled_accuracy")


def run_shuffle_control(preset: Preset, *, seed: int = 0, fresh: bool = False, progress: bool = True,
                        transfer_from: Path | None = None) -> list[dict]:
    """Table 5's control at the preset's scale: each category's expert on its unseen task, with its
    z as trained ("ordered") and permuted within each matrix ("shuffled", `t2lib.core.experts.shuffled`),
    against the base model, on the same questions.

    `transfer_from`: a folder of category experts trained on another base model with the same
    target shapes (the paper's Llama-3-8B experts on Mistral-7B-Instruct-v0.3); each is applied to
    the preset's model through `Expert.transferred_to`, the explicit opt-in past the weights check.
    Each row then names the expert's source model."""
    if transfer_from is not None:
        transfer_from = Path(transfer_from)
        missing = [c for c in preset.suite_spec.categories if not (transfer_from / f"{c}.safetensors").exists()]
        if missing:
            raise FileNotFoundError(f"--transfer-from {transfer_from}: no {', '.join(missing)} expert there; "
                                    "name the folder of another model's experts (e.g. experts/paper)")
        sources = {c: Expert.load(transfer_from / c) for c in preset.suite_spec.categories}  # verified
        key = {c: e.base_fingerprint for c, e in sources.items()}
    else:
        sources = None
        check_expert_set(preset)
        key = None
    store = ResultStore("ablations", preset.folder, version=RECORD_VERSION)
    name = "table5-transfer" if transfer_from is not None else "table5"
    return store.fetch(name, [asdict(preset), seed, key],
                       lambda: _score_transfer(preset, sources, seed=seed, progress=progress), fresh=fresh)[0]


def _score_transfer(preset: Preset, sources: dict | None, *, seed: int, progress: bool) -> list[dict]:
    """Scores base / ordered / shuffled on each unseen task (`run_shuffle_control`)."""
    from t2lib.session import Session

    session = Session(preset, progress=progress)
    if sources is not None:
        experts = {c: e.transferred_to(session.svf.decomp, model_id=preset.model) for c, e in sources.items()}
    else:
        experts, _ = load_expert_set(preset)
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
                row[label] = score_questions(task, session.backend, ids, sampling=sampling, progress=progress)
        rows.append(row)
    return rows


def table5_rows(rows: Sequence[dict]) -> list[dict]:
    """Returns Table 5's rows: accuracy of the base model, the ordered and the shuffled expert per task."""
    return [{"category": r["category"], "expert": r["expert"], "source_model": r.get("source_model", ""),
             "task": r["task"], "n": len(r["ids"]),
             **{f"{k}_accuracy": round(sum(r[k]) / len(r[k]), 4) for k in ("base", "ordered", "shuffled")}}
            for r in rows]


def write_transfer(rows: Sequence[dict], preset: Preset, *, transfer: bool, started: float):
    """Writes table5_shuffled_sigma (or, for another model's experts, table5_transfer) .csv and .json;
    returns the CSV path."""
    return write_table(preset, "table5_transfer" if transfer else "table5_shuffled_sigma", table5_rows(rows),
                       TABLE5_COLUMNS, results={"rows": table5_rows(rows), "per_question": rows}, started=started)
