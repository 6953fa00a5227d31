import pytest
import torch

from conftest import make_tiny_llama
from t2lib.core.experts import effective_scale
from t2lib.core.svd import decompose
from t2lib.core.svf import SVFModel


@pytest.fixture
def svf(tiny_llama, tmp_path):
    return SVFModel(tiny_llama, decompose(tiny_llama, "mlp", cache=tmp_path, progress=False), model_id="tiny")


def random_expert(svf, *, seed, parameterization="direct"):
    e = svf.new_expert(parameterization=parameterization, name=f"e{seed}")
    g = torch.Generator().manual_seed(seed)
    e.z = {n: v + 0.5 * torch.randn(v.shape, generator=g) for n, v in e.z.items()}
    return e


def test_apply_writes_u_diag_sigma_z_vt(svf):
    base = {n: p.detach().clone() for n, p in svf.params.items()}
    expert = random_expert(svf, seed=1)
    svf.apply(expert)
    for name, p in svf.params.items():
        # Independent SVD of the base matrix, composed by hand.
        U, S, Vh = torch.linalg.svd(base[name].double(), full_matrices=False)
        expected = U @ torch.diag(S * expert.z[name].double()) @ Vh
        torch.testing.assert_close(p.double(), expected, atol=1e-4, rtol=1e-4)
        assert not torch.allclose(p, base[name], atol=1e-3)


def test_identity_expert_is_the_base_model(svf):
    base = {n: p.detach().clone() for n, p in svf.params.items()}
    for param in ("direct", "sigmoid"):
        svf.apply(svf.new_expert(parameterization=param))
        for name, p in svf.params.items():
            torch.testing.assert_close(p, base[name], atol=1e-4, rtol=1e-4)


def test_sigmoid_parameterization_keeps_the_sum_of_singular_values():
    sigma = torch.tensor([5.0, 3.0, 1.0])
    z = torch.tensor([2.0, -1.0, 0.3])
    scale = effective_scale(z, sigma, "sigmoid")
    assert float((sigma * scale).sum()) == pytest.approx(float(sigma.sum()))
    assert torch.allclose(scale / scale[0], torch.sigmoid(z) / torch.sigmoid(z[0]))


def test_restore_is_exact_after_switching(svf):
    base = {n: p.detach().clone() for n, p in svf.params.items()}
    embed = svf.model.model.embed_tokens.weight.detach().clone()
    svf.apply(random_expert(svf, seed=1))
    svf.apply(random_expert(svf, seed=2, parameterization="sigmoid"))
    svf.restore()
    for name, p in svf.params.items():
        assert torch.equal(p, base[name])
    assert torch.equal(svf.model.model.embed_tokens.weight, embed)
    assert svf.active is None


def test_switching_experts_does_not_accumulate(svf):
    a, b = random_expert(svf, seed=1), random_expert(svf, seed=2)
    svf.apply(a)
    after_a = {n: p.detach().clone() for n, p in svf.params.items()}
    svf.apply(b)
    svf.apply(a)
    for name, p in svf.params.items():
        assert torch.equal(p, after_a[name])


def test_using_puts_back_the_previous_expert(svf):
    a, b = random_expert(svf, seed=1), random_expert(svf, seed=2)
    svf.apply(a)
    before = {n: p.detach().clone() for n, p in svf.params.items()}
    with svf.using(b):
        assert svf.active is b
    assert svf.active is a
    for name, p in svf.params.items():
        assert torch.equal(p, before[name])


def test_partial_expert_keeps_base_weights_elsewhere(svf):
    base = {n: p.detach().clone() for n, p in svf.params.items()}
    expert = random_expert(svf, seed=3)
    only = "model.layers.1.mlp.up_proj.weight"
    expert.z = {only: expert.z[only]}
    svf.apply(random_expert(svf, seed=4))
    svf.apply(expert)
    for name, p in svf.params.items():
        if name == only:
            assert not torch.allclose(p, base[name], atol=1e-3)
        else:
            assert torch.equal(p, base[name])


def test_wrapping_a_model_with_an_expert_applied_is_refused(svf):
    svf.apply(random_expert(svf, seed=1))
    with pytest.raises(ValueError, match="not the ones that were decomposed"):
        SVFModel(svf.model, svf.decomp)


def _loss(model_out, ids):
    return torch.nn.functional.cross_entropy(model_out.logits[0, :-1], ids[0, 1:])


@pytest.mark.parametrize("parameterization", ["direct", "sigmoid"])
def test_gradient_to_z_matches_explicit_composition(svf, parameterization):
    ids = torch.tensor([[5, 17, 40, 41, 60, 7, 9, 22]])
    expert = random_expert(svf, seed=5, parameterization=parameterization)
    z = {n: v.clone().requires_grad_(True) for n, v in expert.z.items()}
    _loss(svf.forward(svf.composed_weights(z, parameterization=parameterization), input_ids=ids), ids).backward()

    # Reference: compose W' = U diag(σ ⊙ scale(z)) Vᵀ by hand from an independent SVD.
    base = {n: p.detach().clone() for n, p in svf.params.items()}
    z_ref = {n: v.clone().requires_grad_(True) for n, v in expert.z.items()}
    weights = {}
    for name, w in base.items():
        U, S, Vh = torch.linalg.svd(w, full_matrices=False)
        scale = torch.sigmoid(z_ref[name]) * S.sum() / (S * torch.sigmoid(z_ref[name])).sum() \
            if parameterization == "sigmoid" else z_ref[name]
        weights[name] = U @ torch.diag(S * scale) @ Vh
    _loss(torch.func.functional_call(svf.model, weights, (), {"input_ids": ids}), ids).backward()
    for name in z:
        assert z[name].grad is not None and z[name].grad.abs().sum() > 0
        torch.testing.assert_close(z[name].grad, z_ref[name].grad, atol=2e-4, rtol=2e-3)
    # The live weights were not touched by the functional forward.
    for name, p in svf.params.items():
        assert torch.equal(p, base[name])


def test_gradient_to_z_matches_finite_differences():
    model = make_tiny_llama(seed=3).double()
    svf = SVFModel(model, decompose(model, "mlp", cache=False, progress=False))
    ids = torch.tensor([[5, 17, 40, 41, 60, 7]])
    z0 = svf.new_expert().z

    def loss_of(z):
        return _loss(svf.forward(svf.composed_weights(z), input_ids=ids), ids)

    z = {n: v.double().clone().requires_grad_(True) for n, v in z0.items()}
    loss_of(z).backward()
    eps = 1e-2  # RoPE runs in fp32 even in an fp64 model: smaller steps drown in rounding
    for name in list(z)[:3]:
        for i in (0, 3):
            plus = {n: v.detach().double().clone() for n, v in z0.items()}
            minus = {n: v.detach().double().clone() for n, v in z0.items()}
            plus[name][i] += eps
            minus[name][i] -= eps
            with torch.no_grad():
                fd = (loss_of(plus) - loss_of(minus)) / (2 * eps)
            assert float(z[name].grad[i]) == pytest.approx(float(fd), rel=2e-3, abs=1e-5)


@pytest.mark.parametrize("parameterization", ["direct", "sigmoid"])
def test_factored_layers_give_the_composed_outputs_and_gradient(svf, parameterization):
    """The trainer's path (targets computed as U((σ ⊙ scale) ⊙ Vᵀx)) against autograd through the
    composed W', on gate/up (out > in) and down (out < in) matrices alike."""
    ids = torch.tensor([[5, 17, 40, 41, 60, 7, 9, 22]])
    z0 = random_expert(svf, seed=7, parameterization=parameterization).z
    z_ref = {n: v.clone().requires_grad_(True) for n, v in z0.items()}
    out_ref = svf.forward(svf.composed_weights(z_ref, parameterization=parameterization), input_ids=ids)
    _loss(out_ref, ids).backward()

    z = {n: v.clone().requires_grad_(True) for n, v in z0.items()}
    with svf.factored(z, parameterization=parameterization):
        out = svf.model(input_ids=ids)
    _loss(out, ids).backward()
    torch.testing.assert_close(out.logits, out_ref.logits, atol=1e-4, rtol=1e-4)
    shapes = {tuple(p.shape) for p in svf.params.values()}
    assert any(o > i for o, i in shapes) and any(o < i for o, i in shapes)
    for name in z:
        assert z[name].grad.abs().sum() > 0
        torch.testing.assert_close(z[name].grad, z_ref[name].grad, atol=2e-5, rtol=1e-3)
    assert all(p.grad is None for p in svf.params.values())  # no dL/dW' formed


def test_factored_is_undone_after_the_block_even_on_error(svf):
    ids = torch.tensor([[5, 17, 40, 41]])
    with torch.no_grad():
        base_logits = svf.model(input_ids=ids).logits
    z = random_expert(svf, seed=3).z
    with pytest.raises(RuntimeError, match="inside"):
        with svf.factored(z), torch.no_grad():
            assert not torch.allclose(svf.model(input_ids=ids).logits, base_logits, atol=1e-3)
            raise RuntimeError("inside")
    with torch.no_grad():
        assert torch.equal(svf.model(input_ids=ids).logits, base_logits)
    assert all("forward" not in vars(svf.model.get_submodule(n.rsplit(".", 1)[0])) for n in svf.params)
