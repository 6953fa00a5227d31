import json

import pytest
import torch

from conftest import make_tiny_llama
from t2lib.core.experts import Expert, ExpertFileError, ExpertMismatchError
from t2lib.core.mixing import mix
from t2lib.core.svd import decompose
from t2lib.core.svf import SVFModel


def svf_for(model, tmp_path, model_id="tiny"):
    return SVFModel(model, decompose(model, "mlp", cache=tmp_path, progress=False), model_id=model_id)


def noisy(svf, seed, name="e"):
    return svf.new_expert(name=name, noise_std=0.3, seed=seed)


def test_round_trip_keeps_z_and_metadata(tiny_llama, tmp_path):
    svf = svf_for(tiny_llama, tmp_path)
    expert = noisy(svf, 1, "math.v2")
    expert.config = {"lr": 2e-3, "steps": 20}
    expert.metrics = {"test_accuracy": 0.79}
    path = expert.save(tmp_path / "experts" / "math.v2")
    assert path.name == "math.v2.safetensors" and (tmp_path / "experts" / "math.v2.json").exists()
    loaded = Expert.load(path)
    assert list(loaded.z) == list(expert.z)
    for n in expert.z:
        assert torch.equal(loaded.z[n], expert.z[n])
    assert loaded.metadata() == expert.metadata()
    meta = json.loads((tmp_path / "experts" / "math.v2.json").read_text())
    assert meta["base_model"] == "tiny" and meta["num_params"] == 2 * 3 * 32  # r = min(32, 64) per matrix
    # Applying the loaded expert gives the same weights as the original.
    svf.apply(expert)
    w1 = {n: p.detach().clone() for n, p in svf.params.items()}
    svf.apply(loaded)
    for n, p in svf.params.items():
        assert torch.equal(p, w1[n])


def test_mismatched_pair_is_detected(tiny_llama, tmp_path):
    svf = svf_for(tiny_llama, tmp_path)
    noisy(svf, 1).save(tmp_path / "a")
    meta = json.loads((tmp_path / "a.json").read_text())
    meta["base_fingerprint"] = "0" * 24
    (tmp_path / "a.json").write_text(json.dumps(meta))
    with pytest.raises(ExpertFileError, match="does not belong together"):
        Expert.load(tmp_path / "a")
    with pytest.raises(FileNotFoundError, match=r"\.safetensors \+ \.json pair"):
        Expert.load(tmp_path / "missing")


def test_expert_from_another_depth_is_refused(tmp_path):
    small = svf_for(make_tiny_llama(num_layers=2), tmp_path / "a", model_id="small")
    deep = svf_for(make_tiny_llama(num_layers=3), tmp_path / "b", model_id="deep")
    with pytest.raises(ExpertMismatchError, match=r"trained on deep \(3 layers\), small has 2 layers"):
        small.apply(noisy(deep, 1))


def test_expert_from_other_weights_of_same_shape_is_refused(tmp_path):
    a = svf_for(make_tiny_llama(seed=0), tmp_path, model_id="a")
    b = svf_for(make_tiny_llama(seed=1), tmp_path, model_id="b")
    before = {n: p.detach().clone() for n, p in b.params.items()}
    with pytest.raises(ExpertMismatchError, match="other weights"):
        b.apply(noisy(a, 1))
    for n, p in b.params.items():  # nothing was written before the error
        assert torch.equal(p, before[n])


def test_expert_with_other_widths_is_refused(tmp_path):
    a = svf_for(make_tiny_llama(hidden=48), tmp_path, model_id="a")
    b = svf_for(make_tiny_llama(hidden=32), tmp_path, model_id="b")
    with pytest.raises(ExpertMismatchError, match="singular values"):
        b.apply(noisy(a, 1))


def test_mix_per_expert_and_per_layer(tiny_llama, tmp_path):
    svf = svf_for(tiny_llama, tmp_path)
    e1, e2 = noisy(svf, 1, "a"), noisy(svf, 2, "b")
    m = mix([e1, e2], [0.25, 0.75])
    for n in e1.z:
        torch.testing.assert_close(m.z[n], 0.25 * e1.z[n] + 0.75 * e2.z[n])
    per_layer = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # layer 0 from a, layer 1 from b
    m2 = mix([e1, e2], per_layer)
    for n in e1.z:
        src = e1 if ".layers.0." in n else e2
        torch.testing.assert_close(m2.z[n], src.z[n])
    assert m2.config["mixed_from"] == ["a", "b"]
    with pytest.raises(ValueError, match=r"expected \(2,\), \(2, 2\) or \(2, 6\) for 2 experts over 2 layers and 6 target"):
        mix([e1, e2], [0.5, 0.3, 0.2])
    other = svf_for(make_tiny_llama(seed=7), tmp_path)
    with pytest.raises(ExpertMismatchError, match="different base weights"):
        mix([e1, noisy(other, 1)], [0.5, 0.5])


def test_shuffled_sigma_permutes_within_each_matrix_only(tiny_llama, tmp_path):
    from t2lib.core.experts import shuffled

    svf = svf_for(tiny_llama, tmp_path)
    expert = svf.new_expert(name="e", noise_std=0.5, seed=3)
    mixed = shuffled(expert, seed=1)
    assert mixed.name == "e-shuffled" and mixed.config["shuffled_seed"] == 1
    moved = 0
    for n, v in expert.z.items():
        assert torch.equal(mixed.z[n].sort().values, v.sort().values)  # the same values, in this matrix
        moved += int(not torch.equal(mixed.z[n], v))
    assert moved == len(expert.z)
    assert all(torch.equal(a, b) for a, b in zip(shuffled(expert, seed=1).z.values(), mixed.z.values()))
    svf.apply(mixed)  # same base weights: applies as the original would


def test_transfer_to_other_weights_is_an_explicit_opt_in(tiny_llama, tmp_path):
    svf = svf_for(tiny_llama, tmp_path)
    expert = svf.new_expert(name="e", noise_std=0.5, seed=3)
    other = svf_for(make_tiny_llama(seed=7), tmp_path)
    with pytest.raises(ExpertMismatchError, match="use expert.transferred_to"):
        other.apply(expert)
    moved = expert.transferred_to(other.decomp, model_id="tiny-7")
    other.apply(moved)
    assert moved.config["transferred_from"]["base_fingerprint"] == expert.base_fingerprint
    assert moved.base_model == "tiny-7" and all(torch.equal(moved.z[n], v) for n, v in expert.z.items())
    narrower = svf_for(make_tiny_llama(seed=1, hidden=16), tmp_path)
    with pytest.raises(ExpertMismatchError, match="singular values"):
        expert.transferred_to(narrower.decomp)  # z must fit σ entry by entry
