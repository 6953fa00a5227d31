"""Few-shot CEM over mixing weights, on a random-init tiny Llama."""
import pytest
import torch

from fishfarm.task import Task
from fishfarm.types import SamplingParams, Score
from t2lib.core.mixing import mix
from t2lib.methods.cem import CEMConfig, CEMSearch
from t2lib.samples import draw_shots


@pytest.fixture
def setup(tiny_svf):
    svf, backend = tiny_svf
    experts = [svf.new_expert(name=f"e{i}", noise_std=0.3, seed=i) for i in range(3)]
    return svf, backend, experts


def test_direct_mixture_is_taken_around_the_base(setup):
    svf, _, experts = setup
    zero = mix(experts, torch.zeros(3))
    assert all(torch.allclose(v, torch.ones_like(v)) for v in zero.z.values())
    one_hot = mix(experts, torch.tensor([0.0, 1.0, 0.0]))
    assert all(torch.allclose(one_hot.z[n], experts[1].z[n]) for n in one_hot.z)
    half = mix(experts, torch.tensor([0.5, 0.5, 0.0]))  # Σα = 1: the paper's Σ α_k z_k
    n = next(iter(half.z))
    assert torch.allclose(half.z[n], 0.5 * experts[0].z[n] + 0.5 * experts[1].z[n])


def test_per_layer_alpha_mixes_each_layer_separately(setup):
    svf, _, experts = setup
    alpha = torch.zeros(3, 2)
    alpha[0, 0] = 1.0  # layer 0 from expert 0, layer 1 from the base
    mixed = mix(experts, alpha)
    for name, v in mixed.z.items():
        expected = experts[0].z[name] if ".layers.0." in name else torch.ones_like(v)
        assert torch.allclose(v, expected)


def the_expert_wins_task(experts, backend, svf, winner):
    """A task whose scorer rewards exactly the answers the `winner` expert gives."""
    records = [{"id": str(i), "q": w} for i, w in enumerate(["cat", "dog", "sun", "map", "pen", "cup"])]
    wanted = {}
    task = Task("toy", records, id_field="id", prompt=lambda r: f"Say {r['q']}",
                scorer=lambda a, r: Score(correct=a == wanted[r["id"]]), sampling=SamplingParams(max_new_tokens=4))
    with svf.using(experts[winner]):
        answers = backend.generate([task.request(s) for s in task.ids], progress=False)
    wanted.update({s: g.text for s, g in zip(task.ids, answers)})
    return task


def test_cem_converges_on_a_known_objective(setup, monkeypatch):
    svf, backend, experts = setup
    target = torch.tensor([0.1, 0.8, 0.3])
    search = CEMSearch(svf, backend, experts, progress=False,
                       config=CEMConfig(population=16, iterations=12, per_layer=False, seed=0))
    monkeypatch.setattr(search, "fitness", lambda task, ids, alpha: (-float((alpha - target).norm()), 0.0))
    result = search.search(Task("any", [{"q": 1}]), ["0"])
    assert float((result.alpha - target).norm()) < 0.1
    assert result.history[-1]["std"] < result.history[0]["std"]


def test_cem_on_real_answers_keeps_its_best_and_the_base_weights(setup):
    svf, backend, experts = setup
    task = the_expert_wins_task(experts, backend, svf, winner=2)
    config = CEMConfig(shots=6, population=6, iterations=3, per_layer=True, seed=1)
    search = CEMSearch(svf, backend, experts, progress=False, config=config)
    uniform = search.fitness(task, task.ids, torch.full((3, 2), 1 / 3))
    result = search.search(task, task.ids)
    assert result.alpha.shape == (3, 2) and float(result.alpha.min()) >= 0 and float(result.alpha.max()) <= 1
    assert (result.accuracy, result.loglik) >= uniform
    assert result.evaluations <= config.population * config.iterations
    assert svf.fingerprint_matches_base()  # the search leaves the base weights in place
    with svf.using(result.expert):
        assert task.evaluate(backend, progress=False).accuracy == result.accuracy


def test_ties_are_broken_by_log_likelihood(setup, monkeypatch):
    svf, backend, experts = setup
    search = CEMSearch(svf, backend, experts, progress=False,
                       config=CEMConfig(population=4, iterations=1, per_layer=False, init_std=0.5))
    # Every candidate is equally accurate; the likelihood decides, and it prefers a large α_0.
    seen = []

    def fitness(task, ids, alpha):
        seen.append(float(alpha[0]))
        return 0.5, float(alpha[0])

    monkeypatch.setattr(search, "fitness", fitness)
    result = search.search(Task("any", [{"q": 1}]), ["0"])
    assert len(set(seen)) > 1
    assert float(result.alpha[0]) == max(seen) and result.loglik == max(seen)


def test_the_base_model_is_a_candidate_and_wins_when_no_mixture_beats_it(setup, monkeypatch):
    svf, backend, experts = setup
    search = CEMSearch(svf, backend, experts, progress=False,
                       config=CEMConfig(population=5, iterations=2, per_layer=False, seed=3))
    seen = []

    def fitness(task, ids, alpha):
        seen.append(alpha.clone())
        return (0.6 if float(alpha.abs().sum()) == 0 else 0.4), 0.0

    monkeypatch.setattr(search, "fitness", fitness)
    result = search.search(Task("any", [{"q": 1}]), ["0"])
    assert float(result.alpha.abs().sum()) == 0 and result.accuracy == 0.6
    assert torch.allclose(seen[0], torch.full((3,), 1 / 3)) and float(seen[1].abs().sum()) == 0
    assert all(torch.equal(v, torch.ones_like(v)) for v in result.expert.z.values())  # α = 0: the base model
    off = CEMSearch(svf, backend, experts, progress=False,
                    config=CEMConfig(population=5, iterations=1, per_layer=False, include_base=False))
    seen.clear()
    monkeypatch.setattr(off, "fitness", fitness)
    off.search(Task("any", [{"q": 1}]), ["0"])
    assert all(float(a.abs().sum()) > 0 for a in seen)


def test_draw_shots_is_seeded_and_disjoint():
    ids = [str(i) for i in range(20)]
    shots, rest = draw_shots(ids, 5, seed=3)
    assert len(shots) == 5 and not set(shots) & set(rest) and sorted(shots + rest, key=int) == ids
    assert draw_shots(ids, 5, seed=3) == (shots, rest) and draw_shots(ids, 5, seed=4)[0] != shots
    with pytest.raises(ValueError, match="cannot draw"):
        draw_shots(ids[:3], 3, seed=0)


def test_per_matrix_alpha_weighs_each_target_matrix(setup):
    from t2lib.core.mixing import target_order

    svf, backend, experts = setup
    names = target_order(experts[0].z)
    assert len(names) == 6 and [n.split(".")[2] for n in names] == ["0", "0", "0", "1", "1", "1"]
    alpha = torch.zeros(3, 6)
    alpha[2, names.index("model.layers.1.mlp.up_proj.weight")] = 1.0  # one matrix from expert 2
    mixed = mix(experts, alpha)
    for name, v in mixed.z.items():
        expected = experts[2].z[name] if name == "model.layers.1.mlp.up_proj.weight" else torch.ones_like(v)
        assert torch.allclose(v, expected), name
    search = CEMSearch(svf, backend, experts, progress=False,
                       config=CEMConfig(population=3, iterations=1, per_matrix=True, seed=0))
    assert search.shape == (3, 6)
    task = the_expert_wins_task(experts, backend, svf, winner=1)
    assert search.search(task, task.ids[:2]).alpha.shape == (3, 6)
    with pytest.raises(ValueError, match=r"expected \(3,\), \(3, 2\) or \(3, 6\) for 3 experts over 2 layers"):
        mix(experts, torch.zeros(3, 4))


def test_sigmoid_experts_mix_in_z_space_or_in_scale_space(tiny_svf):
    from t2lib.core.experts import effective_scale

    svf, _ = tiny_svf
    experts = [svf.new_expert(name=f"s{i}", parameterization="sigmoid", noise_std=1.0, seed=i) for i in range(2)]
    alpha = torch.tensor([0.3, 0.5])
    raw = mix(experts, alpha)  # the official WeightedCombination: Σ α_k z_k on the stored vectors
    n = next(iter(raw.z))
    assert raw.parameterization == "sigmoid"
    assert torch.allclose(raw.z[n], 0.3 * experts[0].z[n] + 0.5 * experts[1].z[n])
    scaled = mix(experts, alpha, space="scale", decomp=svf.decomp)
    S = svf.decomp[n].S
    s = [effective_scale(e.z[n], S, "sigmoid") for e in experts]
    assert scaled.parameterization == "direct"
    assert torch.allclose(scaled.z[n], 1 + 0.3 * (s[0] - 1) + 0.5 * (s[1] - 1), atol=1e-6)
    assert not torch.allclose(effective_scale(raw.z[n], S, "sigmoid"), scaled.z[n], atol=1e-3)
    one_hot = mix(experts, torch.tensor([0.0, 1.0]), space="scale", decomp=svf.decomp)
    assert torch.allclose(one_hot.z[n], s[1], atol=1e-6)  # the expert's own scales
    base = mix(experts, torch.zeros(2), space="scale", decomp=svf.decomp)
    assert all(torch.allclose(v, torch.ones_like(v)) for v in base.z.values())
    with pytest.raises(ValueError, match="needs the decomposition"):
        mix(experts, alpha, space="scale")
    with pytest.raises(ValueError, match="mix_space must be one of z, scale"):
        CEMConfig(mix_space="logits")


def test_cem_searches_in_the_configured_space(setup, monkeypatch):
    svf, backend, experts = setup
    seen = []
    search = CEMSearch(svf, backend, experts, progress=False,
                       config=CEMConfig(population=3, iterations=1, per_layer=False, mix_space="scale"))
    real = search.mixture
    monkeypatch.setattr(search, "mixture", lambda alpha, **kw: seen.append(alpha) or real(alpha, **kw))
    task = the_expert_wins_task(experts, backend, svf, winner=0)
    result = search.search(task, task.ids[:2])
    assert len(seen) >= 3 and result.expert.parameterization == "direct"
