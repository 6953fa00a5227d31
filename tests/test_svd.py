import pytest
import torch

import t2lib.core.svd as svd_mod
from conftest import make_tiny_llama
from t2lib.core.spectra import spectrum_table
from t2lib.core.svd import Decomposition, decompose, find_target_names


def test_targets_are_ordered_by_layer_then_set(tiny_llama):
    names = find_target_names(tiny_llama, "mlp")
    assert names == [f"model.layers.{i}.mlp.{m}_proj.weight" for i in range(2) for m in ("gate", "up", "down")]
    assert find_target_names(tiny_llama, "attn") == [f"model.layers.{i}.self_attn.{m}_proj.weight"
                                                     for i in range(2) for m in ("q", "v")]
    with pytest.raises(ValueError, match="unknown target set 'mlpp'"):
        find_target_names(tiny_llama, "mlpp")
    with pytest.raises(ValueError, match="no target matrices"):
        find_target_names(torch.nn.Linear(2, 2), "mlp")


def test_factors_reconstruct_each_matrix(tiny_llama, tmp_path):
    decomp = decompose(tiny_llama, "mlp", cache=tmp_path, progress=False)
    params = dict(tiny_llama.named_parameters())
    for name, f in decomp.items():
        assert torch.all(f.S[:-1] >= f.S[1:])  # descending
        torch.testing.assert_close(f.compose(), params[name], atol=1e-4, rtol=1e-4)
    assert decomp.shapes()["model.layers.0.mlp.down_proj.weight"] == 32  # min(out=32, in=64)


def test_cache_is_reused_without_recomputing(tiny_llama, tmp_path, monkeypatch):
    first = decompose(tiny_llama, "mlp", cache=tmp_path, progress=False)
    files = list(tmp_path.glob("*.safetensors"))
    assert len(files) == 1

    def no_svd(*a, **k):
        raise AssertionError("the SVD was recomputed although the cache holds it")

    monkeypatch.setattr(svd_mod.torch.linalg, "svd", no_svd)
    second = decompose(tiny_llama, "mlp", cache=tmp_path, progress=False)
    assert second.base_fingerprint == first.base_fingerprint
    for name in first:
        assert torch.equal(first[name].U, second[name].U) and torch.equal(first[name].S, second[name].S)
    # Another target set or other weights must not hit that cache entry.
    with pytest.raises(AssertionError, match="recomputed"):
        decompose(tiny_llama, "attn", cache=tmp_path, progress=False)
    with pytest.raises(AssertionError, match="recomputed"):
        decompose(make_tiny_llama(seed=1), "mlp", cache=tmp_path, progress=False)


def test_cache_key_changes_when_one_weight_changes(tiny_llama, tmp_path):
    a = decompose(tiny_llama, "mlp", cache=tmp_path, progress=False)
    with torch.no_grad():
        tiny_llama.model.layers[1].mlp.up_proj.weight[3, 5] += 0.5
    b = decompose(tiny_llama, "mlp", cache=tmp_path, progress=False)
    assert a.base_fingerprint != b.base_fingerprint
    assert len(list(tmp_path.glob("*.safetensors"))) == 2


def test_spectrum_table_on_known_singular_values():
    U, _ = torch.linalg.qr(torch.randn(6, 4))
    V, _ = torch.linalg.qr(torch.randn(8, 4))
    sigma = torch.tensor([4.0, 2.0, 1.0, 1.0])
    f = svd_mod.SVDFactors(U, sigma, V.T)
    decomp = Decomposition({"model.layers.3.mlp.down_proj.weight": f}, digests={"model.layers.3.mlp.down_proj.weight": b"x"},
                           targets=["mlp.down_proj"])
    (row,) = spectrum_table(decomp, energy_fractions=(0.25, 0.5))
    assert row["layer"] == 3 and row["module"] == "mlp.down_proj" and row["rank"] == 4
    assert row["condition"] == pytest.approx(4.0)
    assert row["energy_top0.25"] == pytest.approx(16 / 22)
    assert row["energy_top0.5"] == pytest.approx(20 / 22)
    assert row["rank_for_90"] == pytest.approx(0.5)
    p = sigma / sigma.sum()
    assert row["effective_rank"] == pytest.approx(float(torch.exp(-(p * p.log()).sum())))


def test_subset_matches_a_direct_decomposition(tiny_llama, tmp_path):
    both = decompose(tiny_llama, "mlp+attn", cache=tmp_path, progress=False)
    mlp = decompose(tiny_llama, "mlp", cache=tmp_path, progress=False)
    sub = both.subset("mlp")
    assert list(sub) == list(mlp) and sub.base_fingerprint == mlp.base_fingerprint
    for name in mlp:
        torch.testing.assert_close(sub[name].S, mlp[name].S)
    with pytest.raises(ValueError, match="has none of"):
        mlp.subset("attn")


def test_digest_of_a_tensor_over_2_to_the_24_entries():
    """float32 sample positions round past the end of such tensors (an 8B model's MLP matrices)."""
    from t2lib.core.fingerprint import tensor_digest

    t = torch.zeros(2 ** 24 + 3, dtype=torch.bfloat16)
    before = tensor_digest(t)
    t[-1] = 1.0
    assert tensor_digest(t) != before
