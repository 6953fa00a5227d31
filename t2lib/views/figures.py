"""Figure files: every figure drawn from a written results file, rebuilt with no model and no
training (`make figures`, `python -m t2lib figures --preset tiny`).

From the preset's figures folder (figures/ for tiny, figures/<preset>/ otherwise):
- `table2_adaptation.json` (make adapt) -> fig_dispatch_<strategy>.png, fig_fewshot_alpha.png;
- `baseline_<preset>.json` (make baseline) -> fig_baseline_<preset>.png;
- `nb02_train_expert.json` (notebook 02) -> fig02_learning_curve.png, fig02_scale_shift_by_layer.png;
- `table_lora_rank_sweep.json` (python -m t2lib export --rank-sweep) -> fig09_lora_rank_accuracy.png;
- then notebook 06, the paper's tables beside the kit's (from table1_svf_vs_base.csv and
  table2_adaptation.*), and notebook 08, Table 4 and the shuffled-σ control (from
  table4_ablations.json and table5_shuffled_sigma.json).
A results file that is absent is reported and skipped. The figures of notebooks 00, 01 and 07
come from the model itself: `make reproduce` redraws them.

This module is the one home of figure *files*: which results become which file, named after
what it reproduces. The drawing itself is in `t2lib.views.plots`. A new figure is one function here
(called by the `t2lib.runs` step or notebook that writes its results, and by `rebuild`) over one in plots.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import matplotlib.pyplot as plt
import torch

from fishfarm.suites import Suite
from t2lib.views import plots
from t2lib.paths import figures_dir
from t2lib.presets import get_preset


def learning_curve(history: Sequence[dict], *, task: str, train_size: int | None) -> plt.Figure:
    """Returns notebook 02's learning curve (training batch and validation accuracy per step)."""
    prompts = f" on {train_size} prompts" if train_size else ""
    return plots.plot_learning_curve(history, title=f"{task}: REINFORCE{prompts}")


def scale_shift(shifts: Sequence[dict]) -> plt.Figure:
    """Returns notebook 02's mean |scale − 1| per layer and matrix type (`experts.shift_table` rows).

    The scale is what multiplies σ (`Expert.scales`); it is z itself only for "direct" experts.
    """
    return plots.plot_layer_stat(shifts, "mean_abs_shift", ylabel="mean |scale − 1| of σ")


def adaptation_figures(result: dict, suite: Suite, folder: Path) -> list[Path]:
    """Draws the dispatch confusion matrices and the few-shot α of a `t2lib.runs.adaptation.run_adaptation` result into
    `folder` (fig_dispatch_<strategy>.png, fig_fewshot_alpha.png); returns their paths."""
    labels = ("code", "math", "reasoning", "other")
    categories = [c for c in suite.categories if c in suite.unseen]  # a suite file's category may have none
    paths = []
    for strategy, by_gold in result["confusion"].items():
        counts = [[by_gold.get(g, {}).get(p, 0) for p in labels] for g in categories]
        fig = plots.plot_confusion(counts, rows=[f"{suite.unseen[g]} ({g})" for g in categories],
                                   cols=labels, title=f"Dispatch on unseen tasks: {strategy}")
        paths.append(plots.save_figure(fig, folder / f"fig_dispatch_{strategy}.png"))
    if result.get("alpha"):
        fig = plots.plot_alpha({t: torch.tensor(a) for t, a in result["alpha"].items()}, experts=suite.categories)
        paths.append(plots.save_figure(fig, folder / "fig_fewshot_alpha.png"))
    return paths


def baseline_figure(rows: Sequence[dict], preset_name: str, folder: Path) -> Path:
    """Draws the base model's accuracy per task (fig_baseline_<preset>.png) into `folder`."""
    fig = plots.plot_variant_bars({f"{r['suite']}/{r['task']} ({r['role']})": 100 * r["accuracy"] for r in rows},
                                  ylabel="base model accuracy (%)", title=f"Base model, preset {preset_name}")
    return plots.save_figure(fig, folder / f"fig_baseline_{preset_name}.png")


def training_figures(results: dict, folder: Path, *, train_size: int | None) -> list[Path]:
    """Draws notebook 02's learning curve and scale shift (from its results) into `folder`."""
    return [plots.save_figure(learning_curve(results["history"], task=results["task"], train_size=train_size),
                              folder / "fig02_learning_curve.png"),
            plots.save_figure(scale_shift(results["scale_shift"]), folder / "fig02_scale_shift_by_layer.png")]


def rank_sweep_figure(rows: Sequence[dict], folder: Path) -> Path:
    """Draws the accuracy of exported LoRA adapters against their rank (fig09_lora_rank_accuracy.png,
    from `t2lib.runs.export.rank_sweep` rows) into `folder`."""
    fig = plots.plot_rank_sweep(rows, title="SVF experts exported as LoRA adapters: test accuracy against rank")
    return plots.save_figure(fig, folder / "fig09_lora_rank_accuracy.png")


def _results(path: Path):
    return json.loads(path.read_text())["results"]


def _train_size(preset, task: str) -> int | None:
    """The training split's size, for a results file written before it was stored."""
    try:
        return len(preset.task(task, "train"))
    except (OSError, ValueError, ImportError):  # data not at hand (paper tasks offline): no count
        return None


def rebuild(preset_name: str) -> tuple[list[Path], list[str]]:
    """Redraws the figures of the preset's results files; returns (written, skipped sources)."""
    preset = get_preset(preset_name)
    folder = figures_dir(preset.name)
    written: list[Path] = []
    skipped: list[str] = []
    source = folder / "table2_adaptation.json"
    if source.exists():
        written += adaptation_figures(_results(source), preset.suite_spec, folder)
    else:
        skipped.append(f"{source.name} (make adapt PRESET={preset.name})")
    source = folder / f"baseline_{preset.name}.json"
    if source.exists():
        written.append(baseline_figure(_results(source), preset.name, folder))
    else:
        skipped.append(f"{source.name} (make baseline PRESET={preset.name})")
    source = folder / "nb02_train_expert.json"
    if source.exists():
        results = _results(source)
        size = results.get("train_size") or _train_size(preset, results["task"])
        written += training_figures(results, folder, train_size=size)
    else:
        skipped.append(f"{source.name} (notebook 02)")
    source = folder / "table_lora_rank_sweep.json"
    if source.exists():
        written.append(rank_sweep_figure(_results(source)["rows"], folder))
    else:
        skipped.append(f"{source.name} (python -m t2lib export --rank-sweep --preset {preset.name})")
    plt.close("all")
    return written, skipped
