"""Integration tests on the real default model (SmolLM2-135M-Instruct, offline copy when no hub)."""
import pytest
import torch
from safetensors.torch import load_file

import t2lib.core.svd as svd_mod
from t2lib.core.experts import Expert
from t2lib.views.inspection import BandScaling, band_expert
from t2lib.core.models import DEFAULT_MODEL, load_model, resolve_model
from t2lib.core.svd import decompose
from t2lib.core.svf import SVFModel

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def lm():
    return load_model(DEFAULT_MODEL, device="cpu")


def greedy(lm, question, n=24):
    enc = lm.tokenizer.apply_chat_template([{"role": "user", "content": question}], add_generation_prompt=True,
                                           return_tensors="pt", return_dict=True)
    out = lm.model.generate(**enc, max_new_tokens=n, do_sample=False)
    return lm.tokenizer.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True)


def test_default_model_is_a_real_smollm2(lm):
    cfg = lm.model.config
    assert (cfg.model_type, cfg.num_hidden_layers, cfg.hidden_size, cfg.intermediate_size) == ("llama", 30, 576, 1536)
    assert "Paris" in greedy(lm, "What is the capital of France?")


def test_svd_expert_restore_and_round_trip_on_the_real_model(lm, tmp_path, monkeypatch):
    decomp = decompose(lm.model, "mlp", cache=tmp_path / "svd", progress=False)
    assert len(decomp) == 90 and decomp.shapes()["model.layers.0.mlp.down_proj.weight"] == 576
    monkeypatch.setattr(svd_mod.torch.linalg, "svd", lambda *a, **k: pytest.fail("SVD recomputed"))
    again = decompose(lm.model, "mlp", cache=tmp_path / "svd", progress=False)
    assert again.base_fingerprint == decomp.base_fingerprint
    monkeypatch.undo()

    svf = SVFModel(lm.model, decomp, model_id=lm.model_id, base_variant=lm.resolved.variant)
    base = {n: p.detach().clone() for n, p in svf.params.items()}
    question = "What is the capital of France?"
    base_answer = greedy(lm, question)
    svf.apply(band_expert(svf, BandScaling("top", 0.01, 0.0)))  # remove the largest components
    assert greedy(lm, question) != base_answer
    svf.restore()
    assert greedy(lm, question) == base_answer
    assert all(torch.equal(p, base[n]) for n, p in svf.params.items())

    expert = svf.new_expert(name="noisy", noise_std=0.05, seed=3)
    path = expert.save(tmp_path / "noisy")
    loaded = Expert.load(path)
    assert loaded.base_model == DEFAULT_MODEL and loaded.base_variant == lm.resolved.variant
    svf.apply(loaded)
    svf.restore()
    assert all(torch.equal(p, base[n]) for n, p in svf.params.items())


def test_offline_conversion_is_deterministic(tmp_path, monkeypatch):
    shared = resolve_model(DEFAULT_MODEL, source="offline")  # converted once per machine
    monkeypatch.setenv("T2_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    fresh = resolve_model(DEFAULT_MODEL)
    assert fresh.source == "offline-package" and str(fresh.path).startswith(str(tmp_path))
    a = load_file(fresh.path / "model.safetensors")
    b = load_file(shared.path / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
