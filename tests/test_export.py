"""SVF experts exported as PEFT LoRA adapters (t2lib.core.export, `python -m t2lib export`).

Each adapter is loaded by PEFT itself on a copy of the base model and compared, logits against
logits, with the kit applying the same expert (or its truncation) to the base model.
"""
from __future__ import annotations

import copy
import json
import struct

import pytest
import torch
from peft import PeftModel
from peft.tuners.lora.conversion import _find_cutoff_index

from conftest import make_tiny_llama, make_tiny_tokenizer
from t2lib.core.experts import Expert, ExpertMismatchError
from t2lib.core.export import (CONFIG_FILE, PROVENANCE_FILE, WEIGHTS_FILE, adapter_tensor_bytes,
                               delta_singular_values, export_lora, export_mixture, kept_components, lora_factors,
                               truncated_expert)
from t2lib.core.mixing import mix
from t2lib.core.svd import decompose
from t2lib.core.svf import SVFModel

TOKENS = torch.randint(4, 90, (2, 16), generator=torch.Generator().manual_seed(0))


@pytest.fixture
def svf(one_torch_thread):
    model = make_tiny_llama()
    return SVFModel(model, decompose(model, "mlp", cache=False, progress=False), model_id="tiny")


def peft_logits(svf: SVFModel, folder) -> torch.Tensor:
    """Logits of the base model with the adapter in `folder`, loaded by PEFT on a copy of it."""
    svf.restore()
    with torch.no_grad():
        return PeftModel.from_pretrained(copy.deepcopy(svf.model), folder).eval()(TOKENS).logits


def kit_logits(svf: SVFModel, expert: Expert) -> torch.Tensor:
    """Logits of the base model with `expert` applied by the kit."""
    with torch.no_grad(), svf.using(expert):
        return svf.model(TOKENS).logits


@pytest.mark.parametrize("parameterization", ["direct", "sigmoid"])
def test_full_rank_adapter_loads_in_peft_and_equals_the_applied_expert(svf, tmp_path, parameterization):
    expert = svf.new_expert(parameterization=parameterization, noise_std=0.3, seed=1, name="noisy")
    done = expert.to_lora(tmp_path, svf.decomp)
    expected = kit_logits(svf, expert)
    assert (expected - kit_logits(svf, None)).abs().max() > 0.05  # the expert does change the answers
    torch.testing.assert_close(peft_logits(svf, tmp_path), expected, atol=2e-5, rtol=1e-5)
    assert done.rank == 32 and set(done.energy.values()) == {1.0}  # 32 = min(hidden, mlp) of the tiny Llama


def test_adapter_files_follow_peft_conventions_and_record_provenance(svf, tmp_path):
    expert = svf.new_expert(noise_std=0.3, seed=1, name="noisy")
    done = export_lora(expert, svf.decomp, tmp_path, rank=4)
    config = json.loads((tmp_path / CONFIG_FILE).read_text())
    assert (config["r"], config["lora_alpha"], config["peft_type"]) == (4, 4, "LORA")
    assert config["init_lora_weights"] is True and config["bias"] == "none" and config["use_dora"] is False
    assert sorted(config["target_modules"]) == ["down_proj", "gate_proj", "up_proj"]
    blob = (tmp_path / WEIGHTS_FILE).read_bytes()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n])
    assert "base_model.model.model.layers.1.mlp.gate_proj.lora_A.weight" in header
    assert header["base_model.model.model.layers.1.mlp.gate_proj.lora_B.weight"]["shape"] == [64, 4]
    assert header["__metadata__"]["base_fingerprint"] == svf.decomp.base_fingerprint
    assert len(blob) - 8 - n == adapter_tensor_bytes(svf.decomp, done.ranks) == done.bytes - 8 - n
    provenance = json.loads((tmp_path / PROVENANCE_FILE).read_text())
    assert provenance["source"]["tensors_sha256"] == expert.metadata()["tensors_sha256"]
    assert provenance["rank"] == 4 and provenance["base_fingerprint"] == svf.decomp.base_fingerprint
    assert provenance["energy"] == pytest.approx(done.energy, abs=1e-6) and 0 < provenance["energy_kept"] < 1


def test_truncation_keeps_the_largest_changes_and_energy_grows_with_rank(svf):
    expert = svf.new_expert(noise_std=0.3, seed=2)
    name = next(iter(svf.decomp))
    delta = delta_singular_values(expert, svf.decomp)[name]
    kept = lora_factors(expert, svf.decomp, rank=5)[name].kept
    # every kept |δ| is at least every dropped one, and |δ| does not follow σ's order here
    dropped = torch.ones_like(delta, dtype=torch.bool)
    dropped[kept] = False
    assert delta[kept].abs().min() >= delta[dropped].abs().max()
    assert kept.tolist() != list(range(5))
    energies = [lora_factors(expert, svf.decomp, rank=k)[name].energy for k in (1, 2, 4, 8, 16, 32)]
    assert all(a < b for a, b in zip(energies, energies[1:])) and energies[-1] == pytest.approx(1.0)
    for e in (0.3, 0.9, 0.999, 1.0):  # the energy rule is PEFT's: fewest components reaching the fraction
        assert kept_components(delta, energy=e).numel() == _find_cutoff_index(delta.abs().sort(descending=True)[0], e)


def test_rank_k_adapter_equals_the_expert_with_scales_one_outside_the_kept_components(svf, tmp_path):
    expert = svf.new_expert(noise_std=0.3, seed=3)
    done = export_lora(expert, svf.decomp, tmp_path, rank=3)
    assert done.rank == 3
    truncated = truncated_expert(expert, svf.decomp, rank=3)
    via_peft = peft_logits(svf, tmp_path)
    torch.testing.assert_close(via_peft, kit_logits(svf, truncated), atol=2e-5, rtol=1e-5)
    assert (via_peft - kit_logits(svf, expert)).abs().max() > 1e-3  # a real truncation, not the full expert


def test_per_matrix_ranks_and_energy_write_rank_patterns_peft_honours(svf, tmp_path):
    expert = svf.new_expert(noise_std=0.3, seed=4)
    ranks = {n: 2 + i for i, n in enumerate(svf.decomp)}
    export_lora(expert, svf.decomp, tmp_path / "ranks", rank=ranks)
    torch.testing.assert_close(peft_logits(svf, tmp_path / "ranks"),
                               kit_logits(svf, truncated_expert(expert, svf.decomp, rank=ranks)), atol=2e-5, rtol=1e-5)
    done = export_lora(expert, svf.decomp, tmp_path / "energy", energy=0.8)
    assert all(e >= 0.8 for e in done.energy.values()) and done.rank < 32
    torch.testing.assert_close(peft_logits(svf, tmp_path / "energy"),
                               kit_logits(svf, truncated_expert(expert, svf.decomp, energy=0.8)), atol=2e-5, rtol=1e-5)


def test_mixture_adapter_equals_the_mixed_expert_applied(svf, tmp_path):
    a = svf.new_expert(noise_std=0.3, seed=5, name="a")
    b = svf.new_expert(noise_std=0.3, seed=6, name="b")
    alpha = [[0.9, 0.2], [0.5, -0.3]]  # one α per expert per layer, not summing to 1
    done = export_mixture([a, b], alpha, svf.decomp, tmp_path, name="a+b")
    torch.testing.assert_close(peft_logits(svf, tmp_path), kit_logits(svf, mix([a, b], alpha)), atol=2e-5, rtol=1e-5)
    provenance = json.loads((tmp_path / PROVENANCE_FILE).read_text())
    assert [s["name"] for s in provenance["mixed_from"]] == ["a", "b"]
    assert torch.tensor(provenance["mixing"]["alpha"]).allclose(torch.tensor(alpha)) and done.rank == 32


def test_an_expert_for_other_base_weights_is_refused_and_nothing_is_written(svf, tmp_path):
    other = make_tiny_llama(seed=7)
    foreign = Expert.identity(decompose(other, "mlp", cache=False, progress=False), base_model="other",
                              noise_std=0.1, name="foreign")
    with pytest.raises(ExpertMismatchError, match="foreign"):
        export_lora(foreign, svf.decomp, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    expert = svf.new_expert(noise_std=0.1)
    for bad in (dict(rank=0), dict(energy=1.5), dict(rank=2, energy=0.5), dict(rank={"x": 2})):
        with pytest.raises(ValueError):
            export_lora(expert, svf.decomp, tmp_path / "bad", **bad)


def test_the_command_writes_a_folder_peft_loads(svf, tmp_path, monkeypatch):
    from t2lib.cli.export import main

    monkeypatch.setenv("T2_CACHE_DIR", str(tmp_path / "cache"))
    svf.model.save_pretrained(tmp_path / "model")
    make_tiny_tokenizer().save_pretrained(tmp_path / "model")
    expert = svf.new_expert(noise_std=0.3, seed=8, name="math")
    other = svf.new_expert(noise_std=0.3, seed=9, name="code")
    expert.save(tmp_path / "math")
    other.save(tmp_path / "code")
    common = ["--preset", "smoke", "--model", str(tmp_path / "model")]
    assert main([*common, "--expert", str(tmp_path / "math"), "--out", str(tmp_path / "single"), "--rank", "32"]) == 0
    torch.testing.assert_close(peft_logits(svf, tmp_path / "single"), kit_logits(svf, expert), atol=2e-5, rtol=1e-5)
    provenance = json.loads((tmp_path / "single" / PROVENANCE_FILE).read_text())
    assert provenance["source"]["file"].endswith("math.safetensors") and len(provenance["source"]["file_sha256"]) == 64
    assert main([*common, "--expert", str(tmp_path / "math"), "--expert", str(tmp_path / "code"),
                 "--alpha", "0.6", "0.4", "--out", str(tmp_path / "mix")]) == 0
    torch.testing.assert_close(peft_logits(svf, tmp_path / "mix"), kit_logits(svf, mix([expert, other], [0.6, 0.4])),
                               atol=2e-5, rtol=1e-5)


def test_sweep_rows_compare_each_rank_with_the_expert_question_by_question(svf, tmp_path):
    from t2lib.runs.export import smallest_within, sweep_rows
    from t2lib.views.figures import rank_sweep_figure

    expert = [1] * 30 + [0] * 10
    scored = {"task": "add_word", "ids": [str(i) for i in range(40)], "ranks": {
        "full": {"correct": expert, "ranks": {n: 32 for n in svf.decomp}, "energy": 1.0},
        "4": {"correct": [0] * 20 + [1] * 10 + [0] * 10, "ranks": {n: 4 for n in svf.decomp}, "energy": 0.3},
        "16": {"correct": [0] + expert[1:], "ranks": {n: 16 for n in svf.decomp}, "energy": 0.9}}}
    rows = sweep_rows("math", scored, svf.decomp)
    assert [r["rank"] for r in rows] == ["4", "16", "full"]  # ranks ascending, the expert last
    low, mid, full = rows
    assert low["diff"] == -50.0 and low["diff_high"] < 0 and not low["within"] and low["same_scores"] == 20
    assert mid["diff"] == -2.5 and mid["within"] and mid["same_scores"] == 39
    assert full["diff"] == 0 and full["same_scores"] == 40 and full["accuracy"] == 75.0 and full["low"] < 75 < full["high"]
    assert low["adapter_bytes"] * 4 == mid["adapter_bytes"] == adapter_tensor_bytes(svf.decomp, scored["ranks"]["16"]["ranks"])
    assert smallest_within(rows) == {"math": "16"}
    assert rank_sweep_figure(rows, tmp_path).stat().st_size > 0
