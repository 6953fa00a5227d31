"""Table 4's runner: rows train, score against a shared base, are kept, and the table is written."""
import csv

import pytest

from t2lib import ablations
from t2lib.models import LoadedModel, ResolvedModel
from t2lib.presets import get_preset
from tests.conftest import make_tiny_llama, make_tiny_tokenizer


@pytest.fixture
def tiny_world(tmp_path, monkeypatch, one_torch_thread):
    for var, sub in (("T2_BUILD_DIR", "build"), ("T2_FIGURES_DIR", "figures"), ("T2_CACHE_DIR", "cache")):
        monkeypatch.setenv(var, str(tmp_path / sub))
    monkeypatch.setattr("t2lib.presets.Preset.load_model", lambda self, **k: LoadedModel(
        make_tiny_llama(seed=0), make_tiny_tokenizer(), ResolvedModel("tiny", tmp_path, "local")))
    return get_preset("smoke", batch_size=8)


def test_rows_train_share_one_base_and_are_kept(tiny_world, tmp_path, monkeypatch):
    preset = tiny_world
    records = ablations.run_ablations(preset, ["svf-nt-attn", "lora-pg-attn"], progress=False)
    svf, lora = records
    assert svf["params"] == 2 * (32 + 16)  # one z entry per singular value of q (32) and v (16), 2 layers
    assert lora["params"] == 2 * ((16 * 32 + 32 * 16) + (16 * 32 + 16 * 16))  # r 16 on q and v
    assert svf["scored"]["base"] == lora["scored"]["base"]  # the base model is scored once, for both
    assert [len(x) for x in svf["scored"]["tuned"]] == [preset.eval_limit] * 2
    assert svf["config"]["objective"] == "next_token" and lora["config"]["lr"] == ablations.LORA_LR
    monkeypatch.setattr(ablations, "run_row", lambda *a, **k: pytest.fail("a kept row was recomputed"))
    again = ablations.run_ablations(preset, ["svf-nt-attn", "lora-pg-attn"], progress=False)
    assert again == records
    path = ablations.write_outputs(records, preset, started=0.0)
    rows = list(csv.DictReader(path.open()))
    assert [r["row"] for r in rows] == ["base", "svf-nt-attn", "lora-pg-attn"]
    assert rows[1]["paper_train"] == "60.5" and rows[2]["paper_params"] == "6820000"
    assert rows[0]["train_gain"] == "" and float(rows[1]["train_low"]) <= float(rows[1]["train_accuracy"])
    assert float(rows[1]["train_gain_low"]) <= float(rows[1]["train_gain"]) <= float(rows[1]["train_gain_high"])


def test_the_ablations_command_checks_its_rows(capsys):
    with pytest.raises(SystemExit):
        ablations.main(["--rows", "svf-everything"])
    assert "invalid choice: 'svf-everything'" in capsys.readouterr().err


def test_the_shuffle_control_scores_ordered_and_shuffled_z_on_the_same_questions(tiny_world, tmp_path, monkeypatch):
    from t2lib.paths import experts_dir
    from t2lib.session import Session

    monkeypatch.setenv("T2_EXPERTS_DIR", str(tmp_path / "experts"))
    preset = tiny_world
    svf = Session(preset, progress=False).svf
    for i, category in enumerate(preset.suite_spec.categories):
        svf.new_expert(name=category, noise_std=0.8, seed=i).save(experts_dir(preset.expert_set) / category)
    rows = ablations.run_shuffle_control(preset, seed=3, progress=False)
    assert [r["task"] for r in rows] == list(preset.suite_spec.unseen.values())
    for r in rows:
        assert len(r["ids"]) == len(r["base"]) == len(r["ordered"]) == len(r["shuffled"]) == preset.eval_limit
    table = ablations.table5_rows(rows)
    assert set(table[0]) == set(ablations.TABLE5_COLUMNS)
    monkeypatch.setattr("t2lib.session.Session", lambda *a, **k: pytest.fail("kept results were recomputed"))
    assert ablations.run_shuffle_control(preset, seed=3, progress=False) == rows
