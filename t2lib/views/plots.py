"""All the kit's matplotlib code: each function takes plain data and returns a Figure; `save_figure` writes it.

Which results file becomes which figure file is `t2lib.views.figures`' business; the explorer and the
paper tables gather their data and call these.
"""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np

from t2lib.atomic import atomic_path
from t2lib.core.svd import Decomposition, module_types, parse_target


def save_figure(fig: plt.Figure, path: str | Path, *, dpi: int = 130) -> Path:
    """Saves `fig` as PNG atomically; returns the path."""
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format=path.suffix.lstrip(".") or "png")
    return path


def plot_spectra(decomp: Decomposition) -> plt.Figure:
    """Returns one panel per module type: σ_i/σ_1 against i/r, one line per layer (colour = depth)."""
    modules = module_types(decomp)
    num_layers = max(parse_target(n)[0] for n in decomp) + 1
    fig, axes = plt.subplots(1, len(modules), figsize=(3.2 * len(modules), 3.0), squeeze=False)
    cmap = plt.get_cmap("viridis")
    for ax, module in zip(axes[0], modules):
        for name, f in decomp.items():
            layer, mod = parse_target(name)
            if mod != module:
                continue
            s = f.S.detach().float().cpu().numpy()
            ax.plot(np.linspace(0, 1, s.size), s / s[0], color=cmap(layer / max(1, num_layers - 1)), lw=0.8)
        ax.set_yscale("log")
        ax.set_title(module, fontsize=9)
        ax.set_xlabel("i / r")
    axes[0][0].set_ylabel("σ_i / σ_1")
    sm = plt.cm.ScalarMappable(cmap=cmap, norm=plt.Normalize(0, num_layers - 1))
    fig.colorbar(sm, ax=axes[0].tolist(), label="layer", fraction=0.02)
    return fig


def plot_layer_stat(rows: Sequence[dict], column: str, *, ylabel: str | None = None) -> plt.Figure:
    """Returns a line per module type of `column` (from `spectrum_table`) against layer."""
    by_module: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for r in rows:
        by_module[r["module"]].append((r["layer"], r[column]))
    fig, ax = plt.subplots(figsize=(6, 3.2))
    for module, pts in by_module.items():
        pts.sort()
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=".", label=module)
    ax.set_xlabel("layer")
    ax.set_ylabel(ylabel or column)
    ax.legend(fontsize=7, ncol=2)
    ax.grid(alpha=0.3)
    return fig


def plot_variant_bars(values: dict[str, float], *, ylabel: str, title: str = "") -> plt.Figure:
    """Returns a horizontal bar chart of one number per variant (e.g. mean log-likelihood)."""
    fig, ax = plt.subplots(figsize=(6, 0.45 * len(values) + 1))
    names = list(values)
    ax.barh(names, [values[n] for n in names], color="tab:blue")
    ax.invert_yaxis()
    ax.set_xlabel(ylabel)
    if title:
        ax.set_title(title, fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    return fig


def plot_learning_curve(rows: Sequence[dict], *, title: str = "") -> plt.Figure:
    """Returns the training batch accuracy per step and the validation accuracy at evaluations."""
    fig, ax = plt.subplots(figsize=(6, 3.2))
    steps = [r for r in rows if "accuracy" in r]
    ax.plot([r["step"] for r in steps], [100 * r["accuracy"] for r in steps], color="tab:gray", lw=1,
            marker=".", label="training batch (rollouts)")
    evals = [r for r in rows if r.get("val_accuracy") is not None]
    ax.plot([r["step"] for r in evals], [100 * r["val_accuracy"] for r in evals], color="tab:blue", lw=2,
            marker="o", label="validation")
    ax.set_xlabel("step")
    ax.set_ylabel("accuracy (%)")
    if title:
        ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return fig



def plot_learning_curves(rows: Sequence[dict], *, title: str = "") -> plt.Figure:
    """Returns one panel per training task: validation accuracy against step for each method
    (`t2lib.runs.training.learning_curves` rows), the best step marked, the base model as a dashed line."""
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    fig, axes = plt.subplots(1, len(tasks), figsize=(3.6 * len(tasks), 3.0), squeeze=False)
    colours = {"svf": "tab:blue", "lora": "tab:orange"}
    for ax, task in zip(axes[0], tasks):
        mine = [r for r in rows if r["task"] == task]
        for r in mine:
            acc = [100 * a for a in r["accuracy"]]
            ax.plot(r["steps"], acc, marker="o", ms=3, color=colours.get(r["method"], "tab:gray"),
                    label={"svf": "SVF", "lora": "LoRA"}.get(r["method"], r["method"]))
            if r["best_step"] in r["steps"]:
                ax.scatter([r["best_step"]], [acc[r["steps"].index(r["best_step"])]], s=60, facecolors="none",
                           edgecolors=colours.get(r["method"], "tab:gray"), zorder=3)
        ax.axhline(100 * mine[0]["base"], color="black", ls="--", lw=1, label="base model")
        ax.set_title(f"{mine[0]['category']}: {task}", fontsize=9)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("validation accuracy (%)")
    legend = {}  # every method once, whichever panel drew it
    for ax in axes[0]:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            legend.setdefault(label, handle)
    axes[0][-1].legend(list(legend.values()), list(legend), fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_confusion(counts, *, rows: Sequence[str], cols: Sequence[str], title: str = "") -> plt.Figure:
    """Returns a heatmap of counts[i, j] (gold rows[i], predicted cols[j]) with the numbers written in."""
    data = np.asarray(counts, dtype=float)
    fig, ax = plt.subplots(figsize=(1.1 * len(cols) + 2.5, 0.6 * len(rows) + 1.2))
    ax.imshow(data, cmap="Blues", vmin=0, vmax=max(1.0, data.max()))
    ax.set_xticks(range(len(cols)), cols)
    ax.set_yticks(range(len(rows)), rows)
    ax.set_xlabel("dispatched to")
    for i in range(data.shape[0]):
        for j in range(data.shape[1]):
            ax.text(j, i, f"{int(data[i, j])}", ha="center", va="center",
                    color="white" if data[i, j] > data.max() / 2 else "black", fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    return fig


def plot_alpha(alphas: dict, *, experts: Sequence[str]) -> plt.Figure:
    """Returns the mixing weights found per task: bars (one α per expert) or a heatmap per task
    (one α per expert per layer)."""
    tasks = list(alphas)
    per_layer = any(np.asarray(a).ndim == 2 for a in alphas.values())
    if not per_layer:
        fig, ax = plt.subplots(figsize=(1.6 * len(tasks) + 2, 3.0))
        width = 0.8 / len(experts)
        for k, name in enumerate(experts):
            ax.bar(np.arange(len(tasks)) + k * width, [float(np.asarray(alphas[t])[k]) for t in tasks], width,
                   label=name)
        ax.set_xticks(np.arange(len(tasks)) + width * (len(experts) - 1) / 2, tasks)
        ax.set_ylabel("α")
        ax.legend(fontsize=8, title="expert", title_fontsize=8)
        ax.grid(axis="y", alpha=0.3)
        return fig
    fig, axes = plt.subplots(len(tasks), 1, figsize=(7, 1.3 * len(tasks) + 0.6), squeeze=False)
    for ax, t in zip(axes[:, 0], tasks):
        im = ax.imshow(np.asarray(alphas[t]), aspect="auto", cmap="viridis", vmin=0, vmax=1)
        ax.set_yticks(range(len(experts)), experts)
        ax.set_title(t, fontsize=9)
    axes[-1, 0].set_xlabel("layer")
    fig.colorbar(im, ax=axes[:, 0].tolist(), label="α", fraction=0.03)
    return fig


def plot_profiles(profiles: Mapping[str, np.ndarray], sigma: np.ndarray, *, title: str, unit: str,
                  smooth: int = 1) -> plt.Figure:
    """Returns each named profile (a shift per singular-value index) as a line, with σ_i/σ_1 in
    grey on a second axis. `smooth` > 1 draws a running mean over that many indices."""
    fig, ax = plt.subplots(figsize=(7, 3.2))
    for name, y in profiles.items():
        if smooth > 1:
            y = np.convolve(y, np.ones(smooth) / smooth, mode="valid")
        ax.plot(np.arange(y.size), y, lw=0.9, label=name)
    ax.axhline(0, color="black", lw=0.5)
    ax.set_xlabel("singular value index i (0: largest σ)")
    ax.set_ylabel(unit)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, ncol=len(profiles))
    twin = ax.twinx()
    twin.fill_between(np.arange(sigma.size), sigma / sigma[0], color="tab:gray", alpha=0.15, lw=0)
    twin.set_ylabel("σ_i / σ_1", color="tab:gray")
    twin.set_ylim(0, 1.05)
    ax.set_zorder(twin.get_zorder() + 1)
    ax.patch.set_visible(False)
    return fig


def plot_shift_grid(grid: np.ndarray, *, title: str, unit: str) -> plt.Figure:
    """Returns a heatmap of a shift over layers (rows) and singular-value index (columns), red
    for amplified, blue for damped, with limits symmetric around 0."""
    limit = float(np.abs(grid).max()) or 1.0
    fig, ax = plt.subplots(figsize=(7, 3.4))
    im = ax.imshow(grid, aspect="auto", cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest")
    ax.set_xlabel("singular value index i (0: largest σ)")
    ax.set_ylabel("layer")
    ax.set_title(title, fontsize=10)
    fig.colorbar(im, ax=ax, label=unit, fraction=0.04)
    return fig


def plot_similarity(matrix: np.ndarray, names: Sequence[str], *, title: str = "") -> plt.Figure:
    """Returns a (K x K) similarity heatmap with the values written in."""
    fig, ax = plt.subplots(figsize=(0.9 * len(names) + 2.2, 0.8 * len(names) + 1.2))
    im = ax.imshow(matrix, cmap="RdBu_r", vmin=-1, vmax=1)
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
    ax.set_yticks(range(len(names)), names)
    for i in range(len(names)):
        for j in range(len(names)):
            ax.text(j, i, f"{matrix[i, j]:.2f}", ha="center", va="center", fontsize=8,
                    color="white" if abs(matrix[i, j]) > 0.6 else "black")
    if title:
        ax.set_title(title, fontsize=10)
    fig.colorbar(im, ax=ax, fraction=0.046)
    return fig


def plot_gains(rows: Sequence[dict], *, categories: Sequence[str], title: str = "") -> plt.Figure:
    """Returns one panel per category: the gain over the base model of each method (x) for each
    source (bars), with its 95% interval (`t2lib.views.paper` rows)."""
    rows = [r for r in rows if r["gain"] is not None]
    sources = list(dict.fromkeys(r["source"] for r in rows))
    methods = list(dict.fromkeys(r["method"] for r in rows))
    fig, axes = plt.subplots(1, len(categories), figsize=(4.2 * len(categories), 3.4), sharey=False, squeeze=False)
    width = 0.8 / len(sources)
    colours = plt.get_cmap("tab10")
    for ax, category in zip(axes[0], categories):
        for k, source in enumerate(sources):
            mine = {r["method"]: r for r in rows if r["source"] == source and r["category"] == category}
            xs = [i + k * width for i, m in enumerate(methods) if m in mine]
            got = [mine[m] for m in methods if m in mine]
            if not got:
                continue
            gains = np.array([r["gain"] for r in got])
            err = np.array([[r["gain"] - r["gain_low"] for r in got], [r["gain_high"] - r["gain"] for r in got]])
            ax.bar(xs, gains, width, yerr=err, capsize=2, color=colours(k), label=source)
        tasks = " / ".join(dict.fromkeys(r["task"] for r in rows if r["category"] == category))
        ax.set_title(f"{category}: {tasks}", fontsize=9)
        ax.set_xticks(np.arange(len(methods)) + width * (len(sources) - 1) / 2, methods, fontsize=8)
        ax.axhline(0, color="black", lw=0.6)
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].set_ylabel("gain over the base model (points)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(sources), fontsize=8, frameon=False)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    return fig


def plot_ablations(rows: Sequence[dict], *, title: str = "") -> plt.Figure:
    """Returns Table 4 as two panels (the training task's test split, the unseen task): each row's
    accuracy with its 95% interval, the base model as a line, the paper's number as a marker."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 0.45 * len(rows) + 1.4), sharey=True)
    labels = [r["row"] for r in rows]
    y = np.arange(len(rows))
    for ax, part in zip(axes, ("train", "unseen")):
        acc = np.array([float(r[f"{part}_accuracy"]) for r in rows])
        err = np.array([[a - float(r[f"{part}_low"]) for a, r in zip(acc, rows)],
                        [float(r[f"{part}_high"]) - a for a, r in zip(acc, rows)]])
        ax.barh(y, acc, xerr=err, capsize=2, color=["grey" if r["method"] == "-" else
                                                     ("tab:blue" if r["method"] == "svf" else "tab:orange") for r in rows])
        ax.axvline(acc[0], color="black", lw=0.8, ls="--")
        paper = [(i, float(r[f"paper_{part}"])) for i, r in enumerate(rows) if r.get(f"paper_{part}") not in (None, "")]
        if paper:
            ax.scatter([p for _, p in paper], [i for i, _ in paper], marker="x", color="black", zorder=3,
                       label="paper (Llama-3-8B)")
        ax.set_title(f"{rows[0][f'{part}_task']} ({'trained on' if part == 'train' else 'unseen'})", fontsize=9)
        ax.set_xlabel("accuracy (%)")
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(y, labels, fontsize=8)
    axes[0].invert_yaxis()
    axes[1].legend(fontsize=8, loc="lower right")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_rank_sweep(rows: Sequence[dict], *, title: str = "") -> plt.Figure:
    """Returns the LoRA rank sweep as two panels against the adapter's rank: each expert's accuracy
    with its 95% Wilson interval (the full expert dashed), and the share of ‖ΔW‖² kept."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    labels = sorted({str(r["rank"]) for r in rows}, key=lambda v: float("inf") if v == "full" else int(v))
    x = {label: i for i, label in enumerate(labels)}
    for k, name in enumerate(dict.fromkeys(r["expert"] for r in rows)):
        mine = [r for r in rows if r["expert"] == name]
        xs = np.array([x[str(r["rank"])] for r in mine]) + 0.08 * (k - 1.5)  # spread overlapping bars
        acc = np.array([float(r["accuracy"]) for r in mine])
        err = np.array([acc - [float(r["low"]) for r in mine], [float(r["high"]) for r in mine] - acc])
        line = axes[0].errorbar(xs, acc, yerr=err, marker="o", ms=3, capsize=2, lw=1, label=name)
        axes[0].axhline(float(mine[0]["expert_accuracy"]), color=line[0].get_color(), lw=0.8, ls="--")
        axes[1].plot(xs, [float(r["energy_kept"]) for r in mine], marker="o", ms=3, lw=1, label=name)
    for ax, ylabel in zip(axes, ("test accuracy (%)", "energy kept Σ kept δ² / Σ δ²")):
        ax.set_xticks(range(len(labels)), labels, fontsize=8)
        ax.set_xlabel("LoRA rank per matrix")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    axes[1].set_ylim(0, 1.03)  # a share: the whole scale, so a near-1 energy does not look like a slope
    axes[0].legend(fontsize=8, loc="lower right")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
