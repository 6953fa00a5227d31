"""`make figures`: figures redrawn from the written results, with no model."""
import shutil

from t2lib.cli import figures as figures_cli
from t2lib.views import figures
from t2lib.paths import FIGURES_DIR

SOURCES = ("table2_adaptation.json", "baseline_tiny.json", "nb02_train_expert.json", "table_lora_rank_sweep.json")
DRAWN = ("fig_dispatch_prompt.png", "fig_dispatch_cls-expert.png", "fig_fewshot_alpha.png",
         "fig_baseline_tiny.png", "fig02_learning_curve.png", "fig02_scale_shift_by_layer.png",
         "fig09_lora_rank_accuracy.png")


def test_committed_figures_are_redrawn_identically_from_the_committed_results(tmp_path, monkeypatch):
    monkeypatch.setenv("T2_FIGURES_DIR", str(tmp_path))
    for name in SOURCES:
        shutil.copy(FIGURES_DIR / name, tmp_path / name)
    written, skipped = figures.rebuild("tiny")
    assert sorted(p.name for p in written) == sorted(DRAWN) and not skipped
    for name in DRAWN:  # same results, same code: the same bytes as the committed figure
        assert (tmp_path / name).read_bytes() == (FIGURES_DIR / name).read_bytes(), name


def test_missing_results_are_skipped_with_the_command_that_writes_them(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("T2_FIGURES_DIR", str(tmp_path))
    shutil.copy(FIGURES_DIR / "baseline_tiny.json", tmp_path / "baseline_tiny.json")
    assert figures_cli.main(["--preset", "tiny", "--no-notebook"]) == 0
    out, err = capsys.readouterr()
    assert "fig_baseline_tiny.png" in out
    assert "table2_adaptation.json (make adapt PRESET=tiny) - skipped" in err
    assert "nb02_train_expert.json (notebook 02)" in err
    assert not (tmp_path / "fig_dispatch_prompt.png").exists()
