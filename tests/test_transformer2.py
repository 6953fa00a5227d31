"""The two-pass Transformer2 object on a random-init tiny Llama."""
import pytest

from fishfarm.task import Task
from fishfarm.types import Prompt, SamplingParams, Score
from t2lib.methods.cem import CEMConfig
from t2lib.core.experts import ExpertMismatchError
from t2lib.core.svd import decompose
from t2lib.core.svf import SVFModel
from t2lib.methods.transformer2 import Transformer2, question_text
from tests.conftest import make_tiny_llama


@pytest.fixture
def setup(tiny_svf):
    svf, backend = tiny_svf
    experts = {c: svf.new_expert(name=c, noise_std=0.4, seed=i) for i, c in enumerate(["math", "code", "reasoning"])}
    records = [{"id": str(i), "q": w} for i, w in enumerate(["cat", "dog", "sun", "map", "pen", "cup"])]
    task = Task("toy", records, id_field="id", prompt=lambda r: f"Say {r['q']}",
                scorer=lambda a, r: Score(correct="a" in a), sampling=SamplingParams(max_new_tokens=5))
    return svf, backend, experts, task


def answers_with(svf, backend, task, ids, expert):
    with svf.using(expert):
        return [g.text for g in backend.generate([task.request(s) for s in ids], progress=False)]


def test_each_prompt_is_answered_by_its_dispatched_expert_and_other_by_the_base(setup, monkeypatch):
    svf, backend, experts, task = setup
    t2 = Transformer2(svf, backend, experts, strategy="prompt", progress=False)
    routes = ["math", "other", "code", "other", "reasoning", "math"]
    monkeypatch.setattr(t2, "dispatch", lambda questions: routes[:len(questions)])
    # The last expert used before evaluation must not leak into "other" (the official code's bug).
    svf.apply(experts["code"])
    result = t2.evaluate(task, task.ids)
    assert result.labels == routes
    for sid, label, sample in zip(task.ids, routes, result.samples):
        expected = answers_with(svf, backend, task, [sid], experts.get(label))[0]
        assert sample.answer == expected, (sid, label)
    assert svf.active is experts["code"]  # what was applied before is put back
    svf.restore()
    assert result.first_pass_s >= 0 and result.second_pass_s > 0


def test_strategies_sharing_answers_generate_each_answer_once(setup, monkeypatch):
    svf, backend, experts, task = setup
    answers = {}
    base = Transformer2(svf, backend, experts, strategy="base", progress=False, answers=answers)
    first = base.evaluate(task, task.ids)
    assert first.extra["reused_answers"] == 0 and len(answers) == len(task.ids)
    t2 = Transformer2(svf, backend, experts, strategy="prompt", progress=False, answers=answers)
    routes = ["other", "math", "other", "math", "other", "code"]
    monkeypatch.setattr(t2, "dispatch", lambda questions: routes[:len(questions)])
    calls = []
    real = task.evaluate
    monkeypatch.setattr(task, "evaluate", lambda *a, **k: calls.append(k["sample_ids"]) or real(*a, **k))
    result = t2.evaluate(task, task.ids)
    assert result.extra["reused_answers"] == 3  # the "other" samples: the base model's answers
    assert sorted(sid for ids in calls for sid in ids) == ["1", "3", "5"]
    for sid, label, sample in zip(task.ids, routes, result.samples):
        assert sample.answer == answers_with(svf, backend, task, [sid], experts.get(label))[0]
    assert result.second_pass_s > 0
    again = Transformer2(svf, backend, experts, strategy="prompt", progress=False, answers=answers)
    monkeypatch.setattr(again, "dispatch", lambda questions: routes[:len(questions)])
    calls.clear()
    assert again.evaluate(task, task.ids).extra["reused_answers"] == 6 and not calls


def test_base_strategy_matches_plain_evaluation(setup):
    svf, backend, experts, task = setup
    result = Transformer2(svf, backend, experts, strategy="base", progress=False).evaluate(task, task.ids)
    assert [s.answer for s in result.samples] == answers_with(svf, backend, task, task.ids, None)
    assert set(result.labels) == {"base"}


def test_prompt_dispatch_runs_on_the_base_weights_and_cls_expert_with_its_expert(setup, monkeypatch):
    svf, backend, experts, task = setup
    seen = []

    class Recorder:
        def __init__(self, backend, mode):
            self.mode = mode

        def classify(self, questions):
            seen.append((svf.active, self.mode))
            return ["math"] * len(questions)

    monkeypatch.setattr("t2lib.methods.strategies.prompt.PromptDispatcher", Recorder)
    cls = svf.new_expert(name="cls", noise_std=0.1, seed=9)
    Transformer2(svf, backend, experts, strategy="prompt", progress=False).evaluate(task, task.ids[:2])
    Transformer2(svf, backend, experts, strategy="cls-expert", cls_expert=cls, progress=False).evaluate(task, task.ids[:2])
    assert seen == [(None, "choice"), (cls, "generate")]


def test_answer_gives_label_text_and_times_and_restores_weights(setup, monkeypatch):
    svf, backend, experts, task = setup
    t2 = Transformer2(svf, backend, experts, strategy="prompt", progress=False)
    monkeypatch.setattr(t2, "dispatch", lambda questions: ["code"])
    reply = t2.answer("Say cat", sampling=SamplingParams(max_new_tokens=5))
    assert reply.label == "code" and reply.text == answers_with(svf, backend, task, ["0"], experts["code"])[0]
    assert reply.first_pass_s >= 0 and reply.second_pass_s > 0
    assert svf.fingerprint_matches_base()


def test_few_shot_searches_on_the_shots_and_refuses_overlap(setup):
    svf, backend, experts, task = setup
    t2 = Transformer2(svf, backend, experts, strategy="few-shot", progress=False,
                      cem=CEMConfig(shots=2, population=3, iterations=2, per_layer=False))
    with pytest.raises(ValueError, match="shots are also scored"):
        t2.evaluate(task, task.ids, shot_ids=task.ids[:2])
    result = t2.evaluate(task, task.ids[2:], shot_ids=task.ids[:2])
    assert result.prepared is not None and result.prepared.alpha.shape == (3,)
    assert set(result.labels) == {"mixture"} and len(result.samples) == 4
    assert [s.answer for s in result.samples] == answers_with(svf, backend, task, task.ids[2:], result.prepared.expert)


def test_bad_arguments_are_named(setup):
    svf, backend, experts, task = setup
    with pytest.raises(ValueError, match="unknown strategy"):
        Transformer2(svf, backend, experts, strategy="oracle")
    with pytest.raises(ValueError, match="cls_expert="):
        Transformer2(svf, backend, experts, strategy="cls-expert")
    other = make_tiny_llama(seed=5)
    foreign = SVFModel(other, decompose(other, "mlp", cache=False, progress=False)).new_expert(name="foreign")
    with pytest.raises(ExpertMismatchError, match="foreign"):
        Transformer2(svf, backend, {"math": foreign})
    with pytest.raises(RuntimeError, match="prepare"):
        Transformer2(svf, backend, experts, strategy="few-shot").dispatch(["x"])
    with pytest.raises(ValueError, match="the prompt is empty"):
        Transformer2(svf, backend, experts).answer("  ")


def test_question_text_takes_the_user_turn():
    assert question_text(Prompt.chat("What is 2+2?", system="Be brief.")) == "What is 2+2?"
    assert question_text(Prompt.raw("raw text")) == "raw text"
