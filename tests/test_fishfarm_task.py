"""Task: building prompts from records, scoring answers, evaluating a backend."""
from __future__ import annotations

import json
import threading
import time

import pytest

from fishfarm import (GenerationRequest, GenerationResult, HFBackend, Prompt, SamplingParams,
                      Score, Task)
from fishfarm.scoring import score_number

pytestmark = pytest.mark.usefixtures("one_torch_thread")


RECORDS = [{"id": "q1", "question": "What is 2+3?", "answer": "#### 5"},
           {"id": "q2", "question": "What is 10-4?", "answer": "#### 6"},
           {"id": "q3", "question": "What is 3*3?", "answer": "#### 9"}]


class ScriptedBackend:
    """Answers from a dict keyed by the user message; records what it was asked."""

    def __init__(self, answers: dict[str, str]):
        self.answers, self.requests = answers, []

    def generate(self, requests, *, progress=None):
        self.requests += list(requests)
        return [GenerationResult(self.answers[r.prompt.messages[-1].content], (1, 2, 3),
                                 "eos", 10) for r in requests]

    def logprobs(self, requests, *, grad=False):
        raise NotImplementedError


def gsm_task(**kwargs) -> Task:
    return Task("toy-gsm", RECORDS, id_field="id", prompt=lambda r: r["question"],
                scorer=lambda answer, r: score_number(answer, r["answer"]), **kwargs)


def test_evaluate_scores_each_sample_and_aggregates():
    backend = ScriptedBackend({"What is 2+3?": "The answer is 5.", "What is 10-4?": "It is 7",
                               "What is 3*3?": "#### 9"})
    result = gsm_task().evaluate(backend)
    assert [s.sample_id for s in result.samples] == ["q1", "q2", "q3"]
    assert [s.score.correct for s in result.samples] == [True, False, True]
    assert result.accuracy == pytest.approx(2 / 3)
    assert result.metrics["n"] == 3 and result.metrics["n_correct"] == 2
    assert result.samples[1].score.extracted == "7" and result.samples[1].completion_tokens == 3
    assert json.loads(json.dumps(result.to_dict()))["metrics"]["n"] == 3


def test_evaluate_chosen_samples_with_other_sampling():
    backend = ScriptedBackend({"What is 3*3?": "9", "What is 2+3?": "5"})
    sampling = SamplingParams(max_new_tokens=32, temperature=0.7, seed=1)
    result = gsm_task().evaluate(backend, sample_ids=["q3", "q1"], sampling=sampling)
    assert [s.sample_id for s in result.samples] == ["q3", "q1"] and result.accuracy == 1.0
    assert all(r.sampling == sampling for r in backend.requests)
    assert gsm_task(sampling=sampling).request("q1").sampling == sampling


def test_request_and_score_for_trainers():
    task = gsm_task()
    request = task.request("q2")
    assert isinstance(request, GenerationRequest)
    assert request.prompt == Prompt.chat("What is 10-4?")
    assert task.score("q2", "6").correct and task.score("q2", "6").reward == 1.0
    assert task.score("q2", "5").reward == -1.0


def test_task_chat_template_fills_prompts_without_one():
    template = "Q: {{ messages[-1]['content'] }}\nA:"
    task = gsm_task(chat_template=template)
    assert task.request("q1").prompt.chat_template == template
    own = Task("own", RECORDS, prompt=lambda r: Prompt.chat(r["question"], chat_template="X"),
               scorer=lambda a, r: Score(True), chat_template=template)
    assert own.request("0").prompt.chat_template == "X"


def test_subclass_overrides_prompt_and_scorer():
    class Echo(Task):
        def build_prompt(self, record):
            return Prompt.chat(f"Repeat: {record['word']}", system="Be exact.")

        def score_answer(self, answer, record):
            return Score(answer.strip() == record["word"], answer.strip())

    task = Echo("echo", [{"word": "fish"}, {"word": "farm"}])
    assert task.ids == ("0", "1") and len(task) == 2
    backend = ScriptedBackend({"Repeat: fish": "fish", "Repeat: farm": "barn"})
    assert task.evaluate(backend).accuracy == 0.5
    assert backend.requests[0].prompt.messages[0].role == "system"


def test_errors_name_the_fix():
    with pytest.raises(ValueError, match="not unique"):
        Task("dup", RECORDS + RECORDS, id_field="id", prompt=str, scorer=lambda a, r: None)
    with pytest.raises(KeyError, match="has no sample 'q9'"):
        gsm_task().record("q9")
    with pytest.raises(NotImplementedError, match="pass prompt="):
        Task("bare", RECORDS).request("0")


def test_score_workers_score_in_parallel():
    def slow_scorer(answer, record):
        time.sleep(0.3)
        return Score(True, threading.current_thread().name)

    task = Task("slow", RECORDS * 2, prompt=lambda r: r["question"], scorer=slow_scorer,
                score_workers=6)
    backend = ScriptedBackend({r["question"]: "x" for r in RECORDS})
    start = time.monotonic()
    result = task.evaluate(backend)
    assert time.monotonic() - start < 1.2 and result.accuracy == 1.0


def test_evaluate_with_the_hf_backend(tiny_llama, tiny_tokenizer):
    backend = HFBackend(tiny_llama, tiny_tokenizer, progress=False)
    task = gsm_task(sampling=SamplingParams(max_new_tokens=8))
    result = task.evaluate(backend, sample_ids=["q1", "q2"])
    assert result.metrics["n"] == 2 and 0.0 <= result.accuracy <= 1.0
    assert all(s.completion_tokens == 8 and s.finish_reason == "length" for s in result.samples)
    assert result.metrics["truncated"] == 1.0
