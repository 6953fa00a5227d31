"""The expert explorer: shift views, similarity, and the widgets driven as a user would."""
import numpy as np
import pytest
import torch

from fishfarm.types import GenerationRequest, Prompt, SamplingParams
from t2lib.core import mixing, spectra
from t2lib.views import explorer, plots
from t2lib.core.experts import Expert, ExpertMismatchError
from t2lib.core.svd import decompose
from t2lib.core.svf import SVFModel
from tests.conftest import make_tiny_llama


@pytest.fixture
def setup(tiny_svf):
    svf, backend = tiny_svf
    experts = {f"e{i}": svf.new_expert(name=f"e{i}", noise_std=0.3, seed=i) for i in range(2)}
    return svf, backend, experts


def test_profile_and_grid_read_the_scale_of_each_singular_value(setup):
    svf, _, experts = setup
    e = experts["e0"]
    name = "model.layers.1.mlp.up_proj.weight"
    assert np.allclose(spectra.shift_profile(e, svf.decomp, layer=1, module="mlp.up_proj"),
                       (e.z[name] - 1).double().numpy())
    grid = spectra.shift_grid(e, svf.decomp, "mlp.up_proj")
    assert grid.shape == (2, svf.decomp[name].S.numel())
    assert np.allclose(grid[1], (e.z[name] - 1).double().numpy())
    # Δσ/σ₁: the same shift weighted by the singular values
    s = svf.decomp[name].S.double()
    weighted = spectra.shift_profile(e, svf.decomp, layer=1, module="mlp.up_proj", unit=spectra.UNITS[1])
    assert np.allclose(weighted, ((e.z[name] - 1).double() * s / s[0]).numpy())


def test_views_refuse_bad_input_by_name(setup):
    svf, _, experts = setup
    with pytest.raises(ValueError, match="layer 5 is out of range"):
        spectra.shift_profile(experts["e0"], svf.decomp, layer=5, module="mlp.up_proj")
    with pytest.raises(ValueError, match="no target matrix of type 'self_attn.q_proj'"):
        spectra.shift_grid(experts["e0"], svf.decomp, "self_attn.q_proj")
    with pytest.raises(ValueError, match="unknown unit"):
        spectra.shift_grid(experts["e0"], svf.decomp, "mlp.up_proj", unit="percent")
    other = make_tiny_llama(num_layers=3, seed=1)
    foreign = SVFModel(other, decompose(other, "mlp", cache=False, progress=False), model_id="other")
    with pytest.raises(ExpertMismatchError):
        spectra.shift_grid(foreign.new_expert(name="x", noise_std=0.1), svf.decomp, "mlp.up_proj")


def test_relative_change_equals_the_matrix_norm_it_describes(setup):
    svf, _, experts = setup
    e = experts["e1"]
    change = spectra.relative_change(e, svf.decomp)
    name = "model.layers.0.mlp.down_proj.weight"
    f = svf.decomp[name]
    w = f.compose(torch.ones_like(f.S)).double()
    w_new = f.compose(e.scales(svf.decomp)[name]).double()
    assert change[name] == pytest.approx(float((w_new - w).norm() / w.norm()), rel=1e-4)
    assert all(v == 0 for v in spectra.relative_change(svf.new_expert(), svf.decomp).values())


def test_similarity_is_one_on_the_diagonal_and_signed(setup):
    svf, _, experts = setup
    e0 = experts["e0"]
    flipped = Expert({n: 2 - v for n, v in e0.z.items()}, e0.base_model, e0.base_fingerprint,
                     e0.parameterization, "flipped", e0.base_variant)
    sim = spectra.similarity({"e0": e0, "flipped": flipped, "e1": experts["e1"]}, svf.decomp)
    assert np.allclose(np.diag(sim), 1) and sim[0, 1] == pytest.approx(-1)
    assert abs(sim[0, 2]) < 0.5  # independent noise: far from ±1
    per_layer = spectra.similarity({"e0": e0, "flipped": flipped}, svf.decomp, per_layer=True)
    assert per_layer.shape == (2, 2, 2) and np.allclose(per_layer[:, 0, 1], -1)


def test_top_components_are_the_largest_shifts(setup):
    svf, _, experts = setup
    rows = spectra.top_components(experts["e0"], svf.decomp, k=3, unit=spectra.UNITS[0])
    every = np.concatenate([spectra.shift_grid(experts["e0"], svf.decomp, m).ravel()
                            for m in explorer.module_types(svf.decomp)])
    assert [abs(r["shift"]) for r in rows] == pytest.approx(sorted(np.abs(every))[::-1][:3])
    assert rows[0]["scale"] == pytest.approx(1 + rows[0]["shift"])


def test_widgets_redraw_and_the_mixer_answers_with_the_mixture(setup, monkeypatch):
    svf, backend, experts = setup
    drawn = []
    monkeypatch.setattr(explorer, "profiles_figure", lambda chosen, decomp, **kw: drawn.append((tuple(chosen), kw)))
    ui = explorer.ExpertExplorer(svf, backend, experts, max_new_tokens=8)
    ui.widget()
    ui.layer.value = 1
    ui.chosen.value = ("e1",)
    assert drawn[-1] == (("e1",), {"layer": 1, "module": "mlp.gate_proj", "unit": spectra.UNITS[0], "smooth": 1})
    ui.alphas["e1"].value = 1.0
    ui.answer_button.click()
    request = [GenerationRequest(Prompt.chat(ui.prompt.value), SamplingParams(max_new_tokens=8))]
    with svf.using(experts["e1"]):  # α = (0, 1) around the base is expert e1 itself
        expected = backend.generate(request, progress=False)[0].text
    base = backend.generate(request, progress=False)[0].text
    assert ui.last_answers == {"base": base, "mixture": expected} and base != expected
    assert svf.fingerprint_matches_base()  # the base weights are back after answering


def test_the_answer_button_is_disabled_and_says_answering_while_the_model_works(setup, monkeypatch):
    svf, backend, experts = setup
    ui = explorer.ExpertExplorer(svf, backend, experts, max_new_tokens=4)
    seen = []

    def slow_answer():
        seen.append((ui.answer_button.disabled, ui.answer_button.description, list(ui.answer_out.outputs)))
        return {"base": "b", "mixture": "m"}

    monkeypatch.setattr(ui, "answer", slow_answer)
    ui.answer_button.click()
    disabled, label, shown = seen[0]
    assert disabled and label == "answering…"
    assert any("answering" in o.get("text", "") for o in shown)
    assert not ui.answer_button.disabled and ui.answer_button.description == "answer"  # usable again
    text = "".join(o.get("text", "") for o in ui.answer_out.outputs)
    assert "base model:\nb" in text and "answering" not in text
    ui.prompt.value = "   "
    monkeypatch.setattr(ui, "answer", explorer.ExpertExplorer.answer.__get__(ui))
    ui.answer_button.click()  # an empty box: the error is shown and the button comes back
    assert "the prompt box is empty" in "".join(o.get("text", "") for o in ui.answer_out.outputs)
    assert not ui.answer_button.disabled


def test_explorer_refuses_mixed_parameterizations(setup):
    svf, backend, experts = setup
    sig = svf.new_expert(name="s", parameterization="sigmoid")
    with pytest.raises(ValueError, match="parameterizations"):
        explorer.ExpertExplorer(svf, backend, {"e0": experts["e0"], "s": sig})
    with pytest.raises(ValueError, match="at least one expert"):
        explorer.ExpertExplorer(svf, backend, {})


def test_figures_are_drawn(setup):
    svf, _, experts = setup
    import matplotlib.pyplot as plt
    for fig in (explorer.profiles_figure(experts, svf.decomp, layer=0, module="mlp.down_proj", smooth=4),
                explorer.grid_figure(experts["e0"], svf.decomp, module="mlp.down_proj"),
                plots.plot_similarity(spectra.similarity(experts, svf.decomp), list(experts))):
        assert fig.axes and fig.axes[0].has_data()
        plt.close(fig)


def test_change_by_module_averages_the_layers(setup):
    svf, _, experts = setup
    change = spectra.relative_change(experts["e0"], svf.decomp)
    by_module = spectra.change_by_module(experts["e0"], svf.decomp)
    assert list(by_module) == ["mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]
    names = [f"model.layers.{i}.mlp.up_proj.weight" for i in range(2)]
    assert by_module["mlp.up_proj"] == pytest.approx(sum(change[n] for n in names) / 2)
    assert spectra.num_layers(svf.decomp, "mlp.up_proj") == 2


def test_experts_on_other_target_sets_are_viewed_and_mixed(setup):
    svf, backend, experts = setup
    e0 = experts["e0"]
    down = {n: v for n, v in e0.z.items() if "down_proj" in n}
    partial = Expert(down, e0.base_model, e0.base_fingerprint, e0.parameterization, "down only", e0.base_variant)
    assert np.allclose(spectra.shift_grid(partial, svf.decomp, "mlp.up_proj"), 0)  # not covered: unchanged
    full = mixing.complete(partial, svf.decomp)
    assert list(full.z) == list(svf.decomp) and all(torch.equal(full.z[n], v) for n, v in down.items())
    ui = explorer.ExpertExplorer(svf, backend, {"down only": partial, "e1": experts["e1"]}, max_new_tokens=8)
    ui.alphas["down only"].value = 1.0
    answers = ui.answer()
    request = [GenerationRequest(Prompt.chat(ui.prompt.value), SamplingParams(max_new_tokens=8))]
    with svf.using(partial):  # the base weights where the expert has no z
        assert answers["mixture"] == backend.generate(request, progress=False)[0].text
