"""Table 4's runner: rows train, score against a shared base, are kept, and the table is written."""
import csv

import pytest

from t2lib.cli import ablations as ablations_cli
from t2lib.runs import ablations, transfer
from t2lib.core.models import LoadedModel, ResolvedModel
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
    path = ablations.write_ablations(records, preset, started=0.0)
    rows = list(csv.DictReader(path.open()))
    assert [r["row"] for r in rows] == ["base", "svf-nt-attn", "lora-pg-attn"]
    assert rows[1]["paper_train"] == "60.5" and rows[2]["paper_params"] == "6820000"
    assert rows[0]["train_gain"] == "" and float(rows[1]["train_low"]) <= float(rows[1]["train_accuracy"])
    assert float(rows[1]["train_gain_low"]) <= float(rows[1]["train_gain"]) <= float(rows[1]["train_gain_high"])


def test_the_ablations_command_checks_its_rows(capsys):
    with pytest.raises(SystemExit):
        ablations_cli.main(["--rows", "svf-everything"])
    assert "invalid choice: 'svf-everything'" in capsys.readouterr().err


def test_the_shuffle_control_scores_ordered_and_shuffled_z_on_the_same_questions(tiny_world, tmp_path, monkeypatch):
    from t2lib.paths import experts_dir
    from t2lib.session import Session

    monkeypatch.setenv("T2_EXPERTS_DIR", str(tmp_path / "experts"))
    preset = tiny_world
    svf = Session(preset, progress=False).svf
    for i, category in enumerate(preset.suite_spec.categories):
        svf.new_expert(name=category, noise_std=0.8, seed=i).save(experts_dir(preset.expert_set) / category)
    rows = transfer.run_shuffle_control(preset, seed=3, progress=False)
    assert [r["task"] for r in rows] == list(preset.suite_spec.unseen.values())
    for r in rows:
        assert len(r["ids"]) == len(r["base"]) == len(r["ordered"]) == len(r["shuffled"]) == preset.eval_limit
    table = transfer.table5_rows(rows)
    assert set(table[0]) == set(transfer.TABLE5_COLUMNS)
    monkeypatch.setattr("t2lib.session.Session", lambda *a, **k: pytest.fail("kept results were recomputed"))
    assert transfer.run_shuffle_control(preset, seed=3, progress=False) == rows


def _foreign_experts(folder, preset, *, hidden: int = 32, seed: int = 1, model_id: str = "other-model"):
    """Saves one expert per category trained (here: drawn) on another base model."""
    from t2lib.core.svd import decompose
    from t2lib.core.svf import SVFModel

    model = make_tiny_llama(seed=seed, hidden=hidden)
    svf = SVFModel(model, decompose(model, preset.targets, cache=False, progress=False), model_id=model_id)
    for i, category in enumerate(preset.suite_spec.categories):
        svf.new_expert(name=category, noise_std=0.8, seed=10 + i).save(folder / category)
    return svf


def test_table5_transfer_applies_another_models_experts_by_explicit_opt_in(tiny_world, tmp_path, monkeypatch):
    from t2lib.core.experts import Expert, ExpertMismatchError
    from t2lib.session import Session

    preset = tiny_world
    foreign = _foreign_experts(tmp_path / "foreign", preset)
    session = Session(preset, progress=False)
    assert foreign.base_fingerprint != session.svf.base_fingerprint
    with pytest.raises(ExpertMismatchError):  # without the opt-in the other model's expert is refused
        session.svf.apply(Expert.load(tmp_path / "foreign" / "math"))

    rows = transfer.run_shuffle_control(preset, seed=3, progress=False, transfer_from=tmp_path / "foreign")
    assert [r["source_model"] for r in rows] == ["other-model"] * len(rows)
    assert [r["expert"] for r in rows] == list(preset.suite_spec.unseen)  # the category experts
    table = transfer.table5_rows(rows)
    assert {r["source_model"] for r in table} == {"other-model"} and set(table[0]) == set(transfer.TABLE5_COLUMNS)
    # Kept per source: the same folder is not rescored; experts from another source are.
    monkeypatch.setattr("t2lib.session.Session", lambda *a, **k: pytest.fail("kept results were recomputed"))
    assert transfer.run_shuffle_control(preset, seed=3, progress=False, transfer_from=tmp_path / "foreign") == rows
    _foreign_experts(tmp_path / "foreign2", preset, seed=2)
    with pytest.raises(pytest.fail.Exception, match="recomputed"):
        transfer.run_shuffle_control(preset, seed=3, progress=False, transfer_from=tmp_path / "foreign2")


def test_table5_transfer_refuses_other_shapes_and_missing_experts(tiny_world, tmp_path, capsys):
    from t2lib.core.experts import ExpertMismatchError

    preset = tiny_world
    _foreign_experts(tmp_path / "wider", preset, hidden=48)
    with pytest.raises(ExpertMismatchError):
        transfer.run_shuffle_control(preset, progress=False, transfer_from=tmp_path / "wider")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit):
        ablations_cli.main(["--preset", "smoke", "--shuffle-control", "--transfer-from", str(tmp_path / "empty")])
    err = capsys.readouterr().err
    assert "--transfer-from" in err and "no math, code, reasoning expert there" in err
    with pytest.raises(SystemExit):
        ablations_cli.main(["--transfer-from", str(tmp_path / "wider")])
    assert "goes with --shuffle-control" in capsys.readouterr().err
