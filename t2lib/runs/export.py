"""SVF experts as LoRA adapters: export from expert files, and accuracy against the adapter's rank.

    python -m t2lib export --preset tiny --expert experts/tiny/math --out build/lora/math --rank 64
    python -m t2lib export --preset tiny --expert experts/tiny/math --expert experts/tiny/code \\
        --alpha 0.6 0.4 --out build/lora/math+code
    python -m t2lib export --rank-sweep --preset tiny    # figures/table_lora_rank_sweep.csv

The rank sweep scores, for each shipped expert, the adapter truncated to each rank on the test
split Table 1 uses (same questions, same greedy decoding), through the kit's own backend: a rank-k
adapter equals the expert with its scales set to 1 outside the k kept components
(`t2lib.core.export.truncated_expert`, tested against PEFT in tests/test_export.py). Each rank is
compared with the full expert question by question (paired bootstrap interval of the difference).
Each scored (expert, rank) is kept in build/lora_rank/<preset>/, so an interrupted sweep resumes.
"""
from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Sequence

import torch

from t2lib.core.experts import Expert
from t2lib.core.export import (LoRAExport, adapter_tensor_bytes, energy_kept, export_lora, export_mixture,
                               lora_factors, truncated_expert)
from t2lib.core.svd import Decomposition, decompose
from t2lib.methods.reinforce import evaluation_sampling
from t2lib.paths import FIGURES_DIR, experts_dir, figures_dir
from t2lib.runs.scoring import score_questions
from t2lib.runs.store import ResultStore
from t2lib.runs.tables import write_table
from t2lib.runs.training import task_splits
from t2lib.samples import spread_ids
from t2lib.views.paper import paired_interval, wilson_interval

# vLLM's allowed max_lora_rank values up to 512, then the full rank (None: exact).
SWEEP_RANKS: tuple[int | None, ...] = (8, 16, 32, 64, 128, 256, 512, None)
SWEEP_TABLE = "table_lora_rank_sweep"
SWEEP_COLUMNS = ("expert", "task", "rank", "max_rank", "energy_kept", "n", "accuracy", "low", "high",
                 "expert_accuracy", "diff", "diff_low", "diff_high", "within", "same_scores", "adapter_bytes")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def load_decomposition(preset) -> Decomposition:
    """Returns the SVD of the preset's base model's target matrices (from the kit's cache when there)."""
    lm = preset.load_model()
    return decompose(lm.model, preset.targets, storage_dtype=preset.svd_storage_dtype, progress=False)


def export_files(preset, paths: Sequence[str | Path], out: str | Path, *, alpha: Sequence[float] | None = None,
                 rank: int | None = None, energy: float | None = None, dtype: str = "float32",
                 decomp: Decomposition | None = None) -> LoRAExport:
    """Exports one expert file, or the mixture of several with `alpha`, as a LoRA adapter in `out`
    (`t2lib.core.export`); the files' sha256 go in its provenance. Loads the preset's base model
    for its SVD unless `decomp` is given.

    Raises:
        ValueError: several experts without one α each, or α for a single expert.
        ExpertMismatchError: an expert trained on other base weights than the preset's.
    """
    if dtype not in DTYPES:
        raise ValueError(f"unknown adapter dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
    experts = [Expert.load(p) for p in paths]
    if alpha is not None and len(alpha) != len(experts):
        raise ValueError(f"give one mixing weight α per expert: {len(alpha)} for {len(experts)} experts")
    if alpha is None and len(experts) > 1:
        raise ValueError(f"{len(experts)} experts need mixing weights: --alpha with one number per expert")
    decomp = decomp or load_decomposition(preset)
    options = dict(rank=rank, energy=energy, base_model=preset.model, dtype=DTYPES[dtype])
    if alpha is None:
        return export_lora(experts[0], decomp, out, source=paths[0], **options)
    name = "+".join(e.name for e in experts)
    return export_mixture(experts, list(alpha), decomp, out, name=name, paths=list(paths), **options)


def _label(rank: int | None) -> str:
    return "full" if rank is None else str(rank)


def _order(label: str) -> float:
    """Table order: ranks ascending, the full expert last."""
    return float("inf") if label == "full" else int(label)


def score_ranks(session, expert: Expert, ranks: Sequence[int | None] = SWEEP_RANKS, *, fresh: bool = False,
                kept_only: bool = False, progress: bool = True) -> dict:
    """Scores `expert` truncated to each of `ranks` (None: the expert itself) on its task's test
    split, as Table 1 does; returns {"task", "ids", "ranks": {label: {"correct", "ranks", "energy"}}}.
    Each rank's scores are kept in build/lora_rank/<preset>/ and reused by a rerun; `kept_only`
    leaves out the ranks an earlier run has not scored yet (to write the table of a sweep under way)."""
    preset, decomp = session.preset, session.svf.decomp
    task = expert.config.get("task")
    if not task:
        raise ValueError(f"expert '{expert.name}' records no training task in its config: retrain it with this kit")
    test = task_splits(preset, task).test
    config = preset.train_config(task)
    config = replace(config, max_new_tokens=expert.config.get("max_new_tokens", config.max_new_tokens))
    sampling = evaluation_sampling(config, test)
    ids = spread_ids(test.ids, preset.eval_limit)
    store = ResultStore("lora_rank", preset.name, version=1)
    digest = expert.metadata()["tensors_sha256"]
    out = {}
    for rank in ranks:
        inputs = [digest, _label(rank), ids, sampling.max_new_tokens, preset.model, session.backend_name]
        if kept_only and store.get(f"{expert.name}-{_label(rank)}", inputs) is None:
            continue
        factors = lora_factors(expert, decomp, rank=rank)
        weights = expert if rank is None else truncated_expert(expert, decomp, rank=rank)

        def compute(weights=weights):
            with session.svf.using(weights):
                return score_questions(test, session.backend, ids, sampling=sampling, progress=progress)

        correct, _ = store.fetch(f"{expert.name}-{_label(rank)}", inputs, compute, fresh=fresh)
        out[_label(rank)] = {"correct": correct, "ranks": {n: f.A.shape[0] for n, f in factors.items()},
                             "energy": energy_kept(expert, decomp, factors)}
    return {"task": task, "ids": ids, "ranks": out}


def sweep_rows(name: str, scored: dict, decomp: Decomposition) -> list[dict]:
    """Returns the table rows of one expert's `score_ranks` result: accuracy with its 95% Wilson
    interval, the paired difference against the full expert (points, 95% bootstrap interval),
    whether that interval holds 0, how many questions score as the expert's, and the adapter's bytes."""
    full = scored["ranks"]["full"]["correct"]
    n = len(full)
    rows = []
    for label, r in sorted(scored["ranks"].items(), key=lambda kv: _order(kv[0])):
        correct = r["correct"]
        p = sum(correct) / n
        low, high = wilson_interval(p, n)
        d_low, d_high = paired_interval(full, correct)
        rows.append({"expert": name, "task": scored["task"], "rank": label, "max_rank": max(r["ranks"].values()),
                     "energy_kept": round(r["energy"], 6), "n": n, "accuracy": round(100 * p, 2),
                     "low": round(100 * low, 2), "high": round(100 * high, 2),
                     "expert_accuracy": round(100 * sum(full) / n, 2),
                     "diff": round(100 * (sum(correct) - sum(full)) / n, 2), "diff_low": round(100 * d_low, 2),
                     "diff_high": round(100 * d_high, 2), "within": bool(d_low <= 0 <= d_high),
                     "same_scores": sum(a == b for a, b in zip(correct, full)),
                     "adapter_bytes": adapter_tensor_bytes(decomp, r["ranks"])})
    return rows


def smallest_within(rows: Sequence[dict]) -> dict[str, str]:
    """Returns expert -> the smallest rank from which every larger rank's paired interval against
    the expert holds 0 (its answers are as good as the expert's within the sampling error)."""
    out = {}
    for name in dict.fromkeys(r["expert"] for r in rows):
        mine = [r for r in rows if r["expert"] == name]
        best = mine[-1]["rank"]
        for r in reversed(mine):
            if not r["within"]:
                break
            best = r["rank"]
        out[name] = best
    return out


def rank_sweep(session, names: Sequence[str] | None = None, ranks: Sequence[int | None] = SWEEP_RANKS, *,
               fresh: bool = False, kept_only: bool = False, progress: bool = True) -> dict:
    """Runs the rank sweep over the preset's shipped experts (default: every expert file in its
    expert folder); returns {"rows", "smallest_within", "per_question", "ranks", "not_scored"}.
    With `kept_only`, only what earlier runs scored (an expert without its full-rank score is left out)."""
    folder = experts_dir(session.preset.expert_set, create=False)
    names = list(names or sorted(p.stem for p in folder.glob("*.safetensors")))
    if not names:
        raise FileNotFoundError(f"no expert files in {folder}: train them with "
                                f"`python -m t2lib train --preset {session.preset.name} --all`")
    # The full expert first (every rank is compared with it), then from large ranks to small: an
    # interrupted sweep has settled the question "from which rank on is it as good" first.
    ranks = [None, *sorted({r for r in ranks if r is not None}, reverse=True)]
    rows, per_question, not_scored = [], {}, []
    for name in names:
        started = time.time()
        scored = score_ranks(session, Expert.load(folder / name), ranks, fresh=fresh, kept_only=kept_only,
                             progress=progress)
        not_scored += [f"{name}@{_label(r)}" for r in ranks if _label(r) not in scored["ranks"]]
        if "full" not in scored["ranks"]:
            continue
        rows += sweep_rows(name, scored, session.svf.decomp)
        per_question[name] = {"ids": scored["ids"], **{k: v["correct"] for k, v in scored["ranks"].items()}}
        print(f"{name}: {len(scored['ranks'])} of {len(ranks)} ranks in {time.time() - started:.0f} s", flush=True)
    return {"rows": rows, "smallest_within": smallest_within(rows), "per_question": per_question,
            "ranks": sorted((_label(r) for r in ranks), key=_order), "not_scored": not_scored}


def write_rank_sweep(results: dict, preset, *, started: float | None = None) -> Path:
    """Writes table_lora_rank_sweep.csv, its JSON (rows, smallest ranks, per-question scores, run
    info) and fig09_lora_rank_accuracy.png to the preset's figures folder; returns the CSV's path."""
    from t2lib.views.figures import rank_sweep_figure

    path = write_table(preset, SWEEP_TABLE, results["rows"], SWEEP_COLUMNS, results=results, started=started)
    rank_sweep_figure(results["rows"], figures_dir(preset.name))
    return path


def read_rank_sweep(preset_name: str) -> tuple[list[dict], Path]:
    """Returns (the rows, the file) of the preset's rank sweep table, else of the committed tiny one
    (the sweep is a long run: notebooks draw it from its table); numbers come back as numbers.

    Raises:
        FileNotFoundError: neither table exists, naming the command that writes one.
    """
    for path in (figures_dir(preset_name) / f"{SWEEP_TABLE}.json", FIGURES_DIR / f"{SWEEP_TABLE}.json"):
        if path.exists():
            return json.loads(path.read_text())["results"]["rows"], path
    raise FileNotFoundError(f"no {SWEEP_TABLE}.json for preset {preset_name} or in {FIGURES_DIR}: run "
                            f"`python -m t2lib export --rank-sweep --preset {preset_name}`")
