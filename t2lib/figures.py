"""`make figures`: every figure drawn from a written results file, rebuilt with no model and no training.

    python -m t2lib.figures --preset tiny        # what `make figures` runs

From the preset's figures folder (figures/ for tiny, figures/<preset>/ otherwise):
- `table2_adaptation.json` (make adapt) -> fig_dispatch_<strategy>.png, fig_fewshot_alpha.png;
- `baseline_<preset>.json` (make baseline) -> fig_baseline_<preset>.png;
- `nb02_train_expert.json` (notebook 02) -> fig02_learning_curve.png, fig02_z_shift_by_layer.png;
- then notebook 06, the paper's tables beside the kit's (from table1_svf_vs_base.csv and
  table2_adaptation.*).
A results file that is absent is reported and skipped. The figures of notebooks 00, 01 and 07
come from the model itself: `make reproduce` redraws them.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

import matplotlib.pyplot as plt

from t2lib import plots
from t2lib.paths import build_dir, figures_dir
from t2lib.presets import get_preset


def learning_curve(history: Sequence[dict], *, task: str, train_size: int | None) -> plt.Figure:
    """Returns notebook 02's learning curve (training batch and validation accuracy per step)."""
    prompts = f" on {train_size} prompts" if train_size else ""
    return plots.plot_learning_curve(history, title=f"{task}: REINFORCE{prompts}")


def z_shift(shifts: Sequence[dict]) -> plt.Figure:
    """Returns notebook 02's mean |scale − 1| per layer and matrix type (`experts.shift_table` rows)."""
    return plots.plot_layer_stat(shifts, "mean_abs_shift", ylabel="mean |scale − 1| of σ")


def _results(path: Path):
    return json.loads(path.read_text())["results"]


def _train_size(preset, task: str) -> int | None:
    """The training split's size, for a results file written before it was stored."""
    try:
        from t2lib.train import task_splits
        return len(task_splits(preset, task).train)
    except (OSError, ValueError, ImportError):  # data not at hand (paper tasks offline): no count
        return None


def rebuild(preset_name: str) -> tuple[list[Path], list[str]]:
    """Redraws the figures of the preset's results files; returns (written, skipped sources)."""
    from t2lib import adapt, baseline

    preset = get_preset(preset_name)
    folder = figures_dir(preset.name)
    written: list[Path] = []
    skipped: list[str] = []
    source = folder / "table2_adaptation.json"
    if source.exists():
        written += adapt.draw_figures(_results(source), preset, folder)
    else:
        skipped.append(f"{source.name} (make adapt PRESET={preset.name})")
    source = folder / f"baseline_{preset.name}.json"
    if source.exists():
        written.append(baseline.draw_figure(_results(source), preset.name, folder))
    else:
        skipped.append(f"{source.name} (make baseline PRESET={preset.name})")
    source = folder / "nb02_train_expert.json"
    if source.exists():
        results = _results(source)
        size = results.get("train_size") or _train_size(preset, results["task"])
        written.append(plots.save_figure(learning_curve(results["history"], task=results["task"], train_size=size),
                                         folder / "fig02_learning_curve.png"))
        written.append(plots.save_figure(z_shift(results["z_shift"]), folder / "fig02_z_shift_by_layer.png"))
    else:
        skipped.append(f"{source.name} (notebook 02)")
    plt.close("all")
    return written, skipped


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny", help="smoke | tiny | paper (default: tiny)")
    parser.add_argument("--no-notebook", action="store_true", help="skip notebook 06 (the paper tables)")
    args = parser.parse_args(argv)
    written, skipped = rebuild(args.preset)
    for path in written:
        print("redrew", path)
    for name in skipped:
        print("no", name, "- skipped", file=sys.stderr)
    if not args.no_notebook:
        from t2lib.notebooks import list_notebooks, run_notebook
        for nb in list_notebooks(only=["06"]):
            out = run_notebook(nb, build_dir() / "notebooks" / args.preset, parameters={"PRESET": args.preset})
            print("ran", nb.name, "->", out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
