"""The paper's reported numbers beside the kit's, with the sampling error of both.

Tables 1–3 of the paper (accuracy in %; the test-set sizes are the data sets': most of the
paper's accuracies are k/n for these n, a few are not, e.g. Mistral's GSM8K 42.83) and
functions that put a preset's results (`table1_svf_vs_base.csv` from `make experts`,
`table2_adaptation.csv` from `make adapt`) in the same form. Every accuracy gets a 95% Wilson
interval. A gain over the base model gets a paired interval where the per-question results are
known (`make adapt` stores them in `table2_adaptation.json`, expert training and
`python -m t2lib train --rescore` in `table1_svf_vs_base.json`): a seeded bootstrap over questions of the
difference of the two accuracies on the same questions. Elsewhere (the paper's numbers) it gets a
95% Newcombe interval for a difference of two independent proportions, which is conservative
there (both accuracies come from the same questions), so wider.
Notebook 06 draws the comparison.
"""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from fishfarm.suites import get_suite
from t2lib.locks import locked
from t2lib.paths import FIGURES_DIR, figures_dir

CATEGORIES = get_suite("paper").categories  # the paper's tables, in their column order

# Table 1: SVF on the training tasks (test splits). Task name and test size per category.
TABLE1_TASKS = {"math": ("GSM8K", 1319), "code": ("MBPP-Pro", 99), "reasoning": ("ARC-Easy", 2376)}
TABLE1 = {
    "Llama-3-8B-Instruct": {"base": (75.89, 64.65, 88.59), "lora": (77.18, 67.68, 88.97), "svf": (79.15, 66.67, 89.56)},
    "Mistral-7B-Instruct-v0.3": {"base": (42.83, 49.50, 81.65), "lora": (44.66, 51.52, 81.19),
                                 "svf": (49.74, 51.52, 85.14)},
    "Llama-3-70B-Instruct": {"base": (85.29, 80.81, 89.10), "lora": (77.26, 68.69, 88.55), "svf": (88.32, 80.81, 88.47)},
}

# Table 2: adaptation on unseen tasks. The few-shot row is scored on the test split minus 10 shots.
TABLE2_TASKS = {"math": ("MATH", 5000), "code": ("HumanEval", 164), "reasoning": ("ARC-Challenge", 1172)}
TABLE2 = {
    "Llama-3-8B-Instruct": {"base": (24.54, 60.98, 80.63), "lora": (24.12, 52.44, 81.06),
                            "prompt": (25.22, 61.59, 81.74), "cls-expert": (25.18, 62.80, 81.37),
                            "few-shot": (25.47, 62.99, 82.61)},
    "Mistral-7B-Instruct-v0.3": {"base": (13.02, 43.29, 71.76), "lora": (13.16, 37.80, 75.77),
                                 "prompt": (11.86, 43.90, 72.35), "cls-expert": (11.60, 43.90, 74.83),
                                 "few-shot": (13.39, 47.40, 75.47)},
    "Llama-3-70B-Instruct": {"base": (40.64, 78.66, 87.63), "lora": (25.40, 73.78, 83.70),
                             "prompt": (40.44, 79.88, 88.48)},
}
FEW_SHOT_SHOTS = 10

# Table 3: two-pass inference time of the prompt strategy over each whole problem set, seconds
# (first pass, second pass); the paper does not state the hardware.
# Table 4 (Llama-3-8B-Instruct trained on GSM8K): row -> (GSM8K, MATH, trainable parameters); the base
# model's accuracies are its Table 1 GSM8K and Table 2 MATH numbers.
TABLE4 = {
    "base": (75.89, 24.54, 0),
    "svf-pg-mlp": (78.62, 24.20, 390_000),
    "svf-pg-attn": (76.19, 24.20, 160_000),
    "svf-pg-mlp+attn": (79.23, 25.04, 580_000),
    "svf-nt-attn": (60.50, 18.52, 160_000),
    "lora-pg-attn": (57.92, 15.72, 6_820_000),
    "lora-nt-attn": (77.18, 24.12, 6_820_000),
    "lora-nt-mlp+attn": (75.66, 22.12, 35_130_000),
}

TABLE3 = {"math": (42.64, 321.19), "code": (2.76, 14.28), "reasoning": (13.40, 28.51)}

COLUMNS = ("source", "category", "task", "method", "n", "base", "accuracy", "low", "high",
           "gain", "gain_low", "gain_high", "gain_interval")
PAIRED, UNPAIRED = "paired bootstrap", "unpaired Newcombe"


def wilson_interval(p: float, n: int, *, z: float = 1.96) -> tuple[float, float]:
    """Returns the Wilson score interval of a proportion p (0..1) observed on n samples."""
    if n < 1:
        raise ValueError(f"an accuracy needs at least one sample, got n={n}")
    if not 0 <= p <= 1:
        raise ValueError(f"a proportion must lie in [0, 1], got {p}")
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def difference_interval(p1: float, n1: int, p2: float, n2: int, *, z: float = 1.96) -> tuple[float, float]:
    """Returns Newcombe's interval (hybrid score, method 10) for p1 − p2 of two independent samples."""
    l1, u1 = wilson_interval(p1, n1, z=z)
    l2, u2 = wilson_interval(p2, n2, z=z)
    d = p1 - p2
    return d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2), d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)


def paired_interval(base: Sequence[int], adapted: Sequence[int], *, resamples: int = 10_000, seed: int = 0,
                    level: float = 0.95) -> tuple[float, float]:
    """Returns a percentile-bootstrap interval of mean(adapted) − mean(base) over the same questions
    (1/0 per question, in the same order): questions are resampled, so each keeps its pair.

    A question's difference is −1, 0 or +1, so a resample is fully described by how many of each
    it draws: the counts are drawn from the multinomial directly, which is the same bootstrap in
    O(resamples) memory, whatever the number of questions (MATH: 5000)."""
    a, b = np.asarray(adapted, dtype=float), np.asarray(base, dtype=float)
    if a.shape != b.shape or a.ndim != 1 or a.size == 0:
        raise ValueError(f"paired results need two equal, non-empty lists of 1/0 per question; got "
                         f"{a.shape} and {b.shape}")
    d = a - b
    shares = [float(np.mean(d == v)) for v in (-1.0, 0.0, 1.0)]
    counts = np.random.default_rng(seed).multinomial(a.size, shares, size=resamples)
    diffs = (counts[:, 2] - counts[:, 0]) / a.size
    tail = (1 - level) / 2
    return float(np.quantile(diffs, tail)), float(np.quantile(diffs, 1 - tail))


def _row(source: str, category: str, task: str, method: str, n_base: int, n: int, base: float,
         accuracy: float, *, pairs: tuple[Sequence[int], Sequence[int]] | None = None) -> dict:
    """One comparison row from accuracies in % (intervals in %, gains in points); `pairs`
    (base, adapted) per question gives the gain a paired interval."""
    low, high = wilson_interval(accuracy / 100, n)
    if method == "base":
        gain = gain_low = gain_high = kind = None
    else:
        gain = accuracy - base
        if pairs is not None:
            d_low, d_high = paired_interval(*pairs)
            gain = 100 * (sum(pairs[1]) - sum(pairs[0])) / len(pairs[0])  # exact, not from rounded accuracies
            kind = PAIRED
        else:
            d_low, d_high = difference_interval(accuracy / 100, n, base / 100, n_base)
            kind = UNPAIRED
        gain, gain_low, gain_high = round(gain, 2), round(100 * d_low, 2), round(100 * d_high, 2)
    return {"source": source, "category": category, "task": task, "method": method, "n": n,
            "base": round(base, 2), "accuracy": round(accuracy, 2), "low": round(100 * low, 2),
            "high": round(100 * high, 2), "gain": gain, "gain_low": gain_low, "gain_high": gain_high,
            "gain_interval": kind}


def paper_rows(table: Mapping[str, Mapping[str, Sequence[float]]], tasks: Mapping[str, tuple[str, int]],
               *, models: Sequence[str] | None = None) -> list[dict]:
    """Returns the paper's rows of `table` (TABLE1 or TABLE2) in the comparison form."""
    unknown = [m for m in models or () if m not in table]
    if unknown:
        raise ValueError(f"the paper reports no {unknown} here; choose from {list(table)}")
    rows = []
    for model in models or table:
        methods = table[model]
        for k, category in enumerate(CATEGORIES):
            task, n = tasks[category]
            base = methods["base"][k]
            for method, values in methods.items():
                size = n - FEW_SHOT_SHOTS if method == "few-shot" else n
                rows.append(_row(model, category, task, method, n, size, base, values[k]))
    return rows


def read_csv(path: str | Path) -> list[dict]:
    """Returns a CSV's rows with numbers parsed (empty cells stay "")."""
    def parse(v: str):
        try:
            return int(v)
        except ValueError:
            try:
                return float(v)
            except ValueError:
                return v
    with locked(path), open(path, newline="") as f:  # not while a writer holds the table (t2lib.runs.tables)
        return [{k: parse(v) for k, v in row.items()} for row in csv.DictReader(f)]


def kit_table1_rows(rows: Sequence[dict], *, source: str, per_question: Mapping[str, dict] | None = None,
                    method: str = "svf") -> list[dict]:
    """Returns `table1_svf_vs_base.csv` rows (one per expert) in the comparison form: a base and
    an "svf" row per category (the classification expert is not in the paper's Table 1). With
    method="lora", `table1_lora.csv` rows (experts "lora-<category>") give "lora" rows and no base row.

    Args:
        per_question: the JSON's "per_question" (expert -> {"ids", "base", "expert"}, 1/0 per
            test question); where present, the gain's interval is paired.
    """
    per_question = per_question or {}
    prefix = "" if method == "svf" else f"{method}-"
    mine = [r for r in rows if r["expert"].startswith(prefix) and r["expert"][len(prefix):] in CATEGORIES]
    out = []
    for r in sorted(mine, key=lambda r: CATEGORIES.index(r["expert"][len(prefix):])):
        category = r["expert"][len(prefix):]
        base, acc = 100 * r["base_accuracy"], 100 * r["expert_accuracy"]
        known = per_question.get(r["expert"])
        pairs = (known["base"], known["expert"]) if known else None
        if pairs is not None:
            _check_pairs(pairs[0], r["n"], r["base_accuracy"], f"{r['expert']}/base")
            _check_pairs(pairs[1], r["n"], r["expert_accuracy"], f"{r['expert']}/{method}")
        if method == "svf":
            out.append(_row(source, category, r["task"], "base", r["n"], r["n"], base, base))
        out.append(_row(source, category, r["task"], method, r["n"], r["n"], base, acc, pairs=pairs))
    return out


def _check_pairs(correct: Sequence[int], n: int, accuracy: float, what: str) -> None:
    """Refuses per-question results that are not the ones a table row was computed from."""
    if len(correct) != n or sum(correct) != round(accuracy * n):
        raise ValueError(f"the per-question results of {what} ({sum(correct)} of {len(correct)}) do not match "
                         f"its table row ({accuracy:.4f} of {n}): the CSV and JSON come from different runs; "
                         "rerun the command that writes them")


def kit_table2_rows(rows: Sequence[dict], *, source: str, per_question: Mapping[str, dict] | None = None) -> list[dict]:
    """Returns `table2_adaptation.csv` rows (one per task and strategy) in the comparison form.

    Args:
        per_question: `table2_adaptation.json`'s "per_question" (task -> {"ids", strategy -> 1/0
            per question}); where a strategy and the base model both have them, the gain's
            interval is paired.
    """
    base = {r["task"]: r for r in rows if r["strategy"] == "base"}
    missing = sorted({r["task"] for r in rows} - set(base))
    if missing:
        raise ValueError(f"table2 has no base row for {missing}: rerun `make adapt` with the base strategy")
    per_question = per_question or {}
    out = []
    for r in sorted(rows, key=lambda r: CATEGORIES.index(r["category"])):
        b = base[r["task"]]
        known = per_question.get(r["task"], {})
        pairs = (known["base"], known[r["strategy"]]) if "base" in known and r["strategy"] in known else None
        if pairs is not None:
            _check_pairs(pairs[1], r["n"], r["accuracy"], f"{r['task']}/{r['strategy']}")
        out.append(_row(source, r["category"], r["task"], r["strategy"], b["n"], r["n"],
                        100 * b["accuracy"], 100 * r["accuracy"], pairs=pairs))
    return out


def read_per_question(path: str | Path) -> dict | None:
    """Returns the "per_question" block of a `table1_svf_vs_base.json` or `table2_adaptation.json`
    (None when the file or the block is absent: results written before they were stored)."""
    path = Path(path)
    with locked(path.with_suffix(".csv")):  # the table's lock, held by its writers
        if not path.exists():
            return None
        return json.loads(path.read_text())["results"].get("per_question") or None


def pass_time_rows(rows: Sequence[dict], *, source: str, strategy: str = "prompt") -> list[dict]:
    """Returns the two-pass times of `strategy` per task, the kit's and the paper's Table 3
    (which measures the prompt strategy), with the share of the time pass 1 takes."""
    out = []
    kit = [r for r in rows if r["strategy"] == strategy]
    for r in sorted(kit, key=lambda r: CATEGORIES.index(r["category"])):
        total = r["first_pass_s"] + r["second_pass_s"]
        out.append({"source": source, "category": r["category"], "task": r["task"], "n": r["n"],
                    "first_pass_s": r["first_pass_s"], "second_pass_s": r["second_pass_s"],
                    "first_pass_share": round(r["first_pass_s"] / total, 3) if total else None})
    for category, (first, second) in TABLE3.items():
        task, n = TABLE2_TASKS[category]
        out.append({"source": "paper (Llama-3-8B-Instruct)", "category": category, "task": task, "n": n,
                    "first_pass_s": first, "second_pass_s": second,
                    "first_pass_share": round(first / (first + second), 3)})
    return out


def find_results(preset: str, name: str) -> tuple[Path, str]:
    """Returns (path, whose) for the results file `name`: the preset's own figures folder, else
    the committed default-preset ("tiny") results in figures/, which a fresh checkout has."""
    if (figures_dir(preset) / name).exists():
        return figures_dir(preset) / name, preset
    if (FIGURES_DIR / name).exists():
        return FIGURES_DIR / name, "tiny"
    maker = {"table1": f"make experts PRESET={preset}", "table2": f"make adapt PRESET={preset}",
             "table4": f"make ablations PRESET={preset}",
             "table5": f"python -m t2lib ablations --shuffle-control --preset {preset}"}.get(name[:6],
                                                                                           f"make adapt PRESET={preset}")
    raise FileNotFoundError(f"no {name} in {figures_dir(preset)} or {FIGURES_DIR}: run `{maker}`")
