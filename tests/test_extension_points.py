"""The registries a new backend, strategy or suite plugs into, and the weight-sync hand-off."""
import copy

import pytest
import torch

from fishfarm.backends import BACKENDS, Backend, HFBackend, make_backend, resolve_backend
from fishfarm.suites import SUITES, get_suite
from fishfarm.types import GenerationRequest, Prompt, SamplingParams
from t2lib import strategies
from t2lib.presets import get_preset
from t2lib.strategies import AdaptationContext, Strategy
from t2lib.transformer2 import Transformer2
from tests.conftest import make_tiny_tokenizer


class OwnCopyBackend(HFBackend):
    """A backend that keeps its own copy of the model, as a vLLM engine does: it sees an expert
    only through `sync_weights`."""
    shares_weights = False

    def __init__(self, model, tokenizer, **kw):
        super().__init__(copy.deepcopy(model), tokenizer, **kw)
        self.synced: list[set[str]] = []

    def sync_weights(self, weights):
        own = dict(self.model.named_parameters())
        with torch.no_grad():
            for name, tensor in weights.items():
                own[name].copy_(tensor)
        self.synced.append(set(weights))


def greedy(backend, text="Say cat"):
    return backend.generate([GenerationRequest(Prompt.chat(text), SamplingParams(max_new_tokens=6))],
                            progress=False)[0].text


def test_the_factory_builds_registered_backends_and_names_the_choices():
    assert "hf" in BACKENDS and resolve_backend("auto") in BACKENDS
    from tests.conftest import make_tiny_llama
    backend = make_backend("hf", make_tiny_llama(), make_tiny_tokenizer(), batch_size=3, progress=False)
    assert isinstance(backend, HFBackend) and isinstance(backend, Backend) and backend.batch_size == 3
    with pytest.raises(ValueError, match="unknown backend 'nope'; choose one of hf, auto"):
        make_backend("nope", None, None)
    with pytest.raises(ValueError, match="unknown backend"):
        get_preset("tiny", backend="nope")


def test_a_backend_with_its_own_weights_follows_every_change_through_sync(tiny_svf):
    svf, hf = tiny_svf
    own = OwnCopyBackend(svf.model, make_tiny_tokenizer(), progress=False)
    expert = svf.new_expert(name="e", noise_std=0.5, seed=1)
    svf.apply(expert)  # changed before the backend is attached: attach syncs it at once
    svf.attach(own)
    assert greedy(own) == greedy(hf) and own.synced[-1] == set(svf.params)
    svf.restore()
    base = greedy(hf)
    assert greedy(own) == base
    with svf.using(expert):
        assert greedy(own) == greedy(hf) != base
    assert greedy(own) == base
    z = {n: v * 1.3 for n, v in expert.z.items()}
    svf.write_z(z)  # a rollout's weights
    assert greedy(own) == greedy(hf) != base
    svf.restore()
    calls = len(own.synced)
    svf.attach(own)  # attaching twice keeps one subscription
    svf.apply(expert)
    assert len(own.synced) == calls + 2  # one sync at attach, one at apply


def test_transformer2_answers_through_a_backend_that_only_learns_by_sync(tiny_svf):
    svf, hf = tiny_svf
    own = OwnCopyBackend(svf.model, make_tiny_tokenizer(), progress=False)
    svf.attach(own)
    experts = {c: svf.new_expert(name=c, noise_std=0.5, seed=i) for i, c in enumerate(("math", "code", "reasoning"))}
    t2 = Transformer2(svf, own, experts, strategy="prompt", progress=False)
    t2.dispatch = lambda questions: ["code"] * len(questions)
    reply = t2.answer("Say cat", sampling=SamplingParams(max_new_tokens=6))
    with svf.using(experts["code"]):
        assert reply.text == greedy(hf)


class AlwaysMath(Strategy):
    name = "always-math"
    routes_by_category = True

    def route(self, questions):
        return ["math"] * len(questions)


def test_a_new_strategy_is_one_class_and_one_registry_entry(tiny_svf, monkeypatch):
    svf, backend = tiny_svf
    monkeypatch.setitem(strategies.REGISTRY, AlwaysMath.name, AlwaysMath)
    experts = {c: svf.new_expert(name=c, noise_std=0.5, seed=i) for i, c in enumerate(("math", "code", "reasoning"))}
    reply = Transformer2(svf, backend, experts, strategy="always-math", progress=False).answer(
        "Say dog", sampling=SamplingParams(max_new_tokens=6))
    with svf.using(experts["math"]):
        assert reply.label == "math" and reply.text == greedy(backend, "Say dog")
    with pytest.raises(ValueError, match="unknown strategy 'oracle'; choose one of base, prompt, cls-expert, few-shot"):
        strategies.make_strategy("oracle", AdaptationContext(svf, backend, experts))


def test_the_registered_strategies_declare_what_the_table_runner_reads():
    reg = strategies.REGISTRY
    assert list(reg) == ["base", "prompt", "cls-expert", "few-shot"]
    assert [s for s, cls in reg.items() if cls.routes_by_category] == ["prompt", "cls-expert"]
    assert [s for s, cls in reg.items() if cls.uses_shots] == ["few-shot"]


def test_suites_say_their_training_unseen_and_classification_tasks():
    tiny, paper = get_suite("tiny"), get_suite("paper")
    assert set(SUITES) == {"tiny", "paper"}
    assert tiny.training == {"math": "add_word", "code": "fn_arith", "reasoning": "where_person"}
    assert tiny.unseen == {"math": "sub_word", "code": "fn_string", "reasoning": "where_crowd"}
    assert paper.training == {"math": "gsm8k", "code": "mbpp", "reasoning": "arc_easy"}
    assert paper.unseen == {"math": "math", "code": "humaneval", "reasoning": "arc_challenge"}
    assert tiny.classification == "classification" and tiny.trainable[-1] == "classification"
    assert [tiny.role(t) for t in ("add_word", "sub_word", "classification")] == ["train", "unseen", "dispatch"]
    assert tiny.expert_name("fn_arith") == "code" and paper.category("humaneval") == "code"
    with pytest.raises(ValueError, match="no expert is trained on 'sub_word'"):
        tiny.expert_name("sub_word")
    with pytest.raises(ValueError, match="unknown task 'gsm8k' in the tiny suite; choose one of add_word"):
        tiny.task("gsm8k")
    with pytest.raises(ValueError, match="unknown suite 'nope'; choose one of tiny, paper"):
        get_suite("nope")


def test_a_preset_gives_its_paper_budget_to_paper_scale_suites_only():
    smoke = get_preset("smoke")  # paper_max_new_tokens=16
    assert smoke.task("add_word", "test").sampling.max_new_tokens == 48  # the tiny task's own
    assert smoke.task("classification", "test").sampling.max_new_tokens == 8
    assert smoke.suite_spec is get_suite("tiny")
    assert smoke.task("gsm8k", "test", suite="paper").sampling.max_new_tokens == 16
    assert get_preset("paper").task("math", "test").sampling.max_new_tokens == 1024  # the paper's own
