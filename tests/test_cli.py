"""Command lines refuse bad input with a usage error before loading a model or writing a file."""
import pytest

from t2lib.cli import adapt, baseline, figures, notebooks, train


@pytest.fixture
def no_model(monkeypatch):
    """Any attempt to load the model fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before the arguments were checked")
    monkeypatch.setattr("t2lib.session.Session", refuse)
    monkeypatch.setattr("t2lib.presets.Preset.load_model", refuse)


@pytest.mark.parametrize("main", [train.main, adapt.main, baseline.main, figures.main, notebooks.main],
                         ids=["train", "adapt", "baseline", "figures", "notebooks"])
def test_an_unknown_preset_gets_the_usage_line_and_the_choices(main, no_model, capsys):
    extra = ["--all"] if main is train.main else []
    with pytest.raises(SystemExit) as stop:
        main(["--preset", "nope", *extra])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and "usage:" in err
    assert "invalid choice: 'nope'" in err and "smoke" in err and "tiny" in err and "paper" in err


def test_train_names_the_suite_tasks_for_an_unknown_task(no_model, capsys):
    with pytest.raises(SystemExit):
        train.main(["--preset", "tiny", "--task", "nope"])
    err = capsys.readouterr().err
    assert "'nope' is not trained on in the tiny suite" in err and "add_word, fn_arith, where_person, classification" in err


def test_rescore_names_a_missing_expert_file_and_the_command(no_model, tmp_path, capsys):
    with pytest.raises(SystemExit):
        train.main(["--preset", "tiny", "--task", "add_word", "--rescore", "--out", str(tmp_path / "none")])
    assert "t2lib train --preset tiny --task add_word" in capsys.readouterr().err


def test_adapt_checks_the_expert_set_before_loading_the_model(no_model, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("T2_FIGURES_DIR", str(tmp_path / "figures"))
    monkeypatch.setenv("T2_EXPERTS_DIR", str(tmp_path / "experts"))
    with pytest.raises(SystemExit):
        adapt.main(["--preset", "tiny"])
    assert "no math, code, reasoning expert in" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        adapt.main(["--preset", "tiny", "--backend", "nope"])
    assert not (tmp_path / "figures").exists() and not (tmp_path / "experts").exists()


def test_the_notebook_runner_writes_nothing_for_bad_arguments(no_model, tmp_path, capsys):
    for args in (["--preset", "nope"], ["--only", "99"]):
        with pytest.raises(SystemExit):
            notebooks.main([*args, "--out", str(tmp_path / "out")])
    assert "no notebooks match 99" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_model_and_targets_come_from_the_command_line():
    import argparse

    from t2lib.presets import add_preset_arguments, preset_from_args

    parser = argparse.ArgumentParser()
    add_preset_arguments(parser)
    args = parser.parse_args(["--preset", "paper", "--model", "mistralai/Mistral-7B-Instruct-v0.3",
                              "--targets", "attn", "--backend", "hf"])
    preset = preset_from_args(args)
    assert (preset.model, preset.targets, preset.backend) == ("mistralai/Mistral-7B-Instruct-v0.3", "attn", "hf")
    assert preset.train == preset_from_args(parser.parse_args(["--preset", "paper"])).train
    tiny = preset_from_args(parser.parse_args(["--preset", "tiny", "--model", "/models/mine"]))
    assert tiny.model_source == "auto"  # a model named here is looked up everywhere
    assert preset_from_args(parser.parse_args([])).model_source == "offline"
    with pytest.raises(SystemExit):
        parser.parse_args(["--targets", "everything"])


def test_adapt_takes_the_official_shot_seeds(no_model, monkeypatch):
    from t2lib.methods.cem import OFFICIAL_SHOT_SEEDS

    seen = []
    monkeypatch.setattr(adapt, "check_strategies", lambda preset, strategies, folder=None: None)
    monkeypatch.setattr(adapt, "run_adaptation", lambda preset, **kw: seen.append(preset) or {})
    monkeypatch.setattr(adapt, "write_adaptation", lambda *a, **k: __import__("pathlib").Path("x"))
    adapt.main(["--preset", "tiny", "--shot-seeds", "official"])
    adapt.main(["--preset", "tiny"])
    assert seen[0].cem.shot_seeds == OFFICIAL_SHOT_SEEDS and seen[0].cem.shot_seed("humaneval") == 16
    assert seen[1].cem.shot_seeds == () and seen[1].cem.shot_seed("humaneval") == seen[1].cem.seed


def test_adapt_names_its_table_after_the_protocol(no_model, monkeypatch, tmp_path):
    from t2lib.cli import adapt

    seen = {}
    monkeypatch.setattr(adapt, "check_strategies", lambda *a, **k: None)
    monkeypatch.setattr(adapt, "run_adaptation", lambda preset, **k: seen.setdefault("preset", preset) and {"rows": []})
    monkeypatch.setattr(adapt, "write_adaptation", lambda result, preset, *, started, name, figures: seen.update(name=name, figures=figures))
    adapt.main(["--preset", "smoke", "--backend", "hf", "--alpha", "matrix", "--mix-space", "scale",
                "--shot-seeds", "official", "--arc-cot"])
    assert seen["figures"] is False  # the preset's own figures stay those of its own protocol
    cem = seen["preset"].cem
    assert cem.per_matrix and not cem.per_layer and cem.mix_space == "scale" and cem.shot_seeds
    assert seen["name"] == "table2_adaptation_official-shots_alpha-per-matrix_mix-scale_arc-cot"


def test_the_single_entry_point_runs_each_command_and_names_them_all(capsys):
    import importlib

    from t2lib.__main__ import main
    from t2lib.cli import COMMANDS

    assert main(["nope"]) == 2
    err = capsys.readouterr().err
    assert "unknown command 'nope'" in err and all(name in err for name in COMMANDS)
    with pytest.raises(SystemExit) as stop:
        main(["train", "--help"])
    assert stop.value.code == 0 and "usage: python -m t2lib train" in capsys.readouterr().out
    assert all(callable(importlib.import_module(f"t2lib.cli.{name}").main) for name in COMMANDS)
