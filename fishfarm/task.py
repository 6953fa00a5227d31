"""A task: records, how to prompt for each, and how to score an answer; evaluates a backend.

Build one from a list of records plus two functions, or subclass and override `build_prompt`
and `score_answer`:

    task = Task("gsm8k", records, id_field="id",
                prompt=lambda r: r["question"] + "\\nEnd with 'The answer is N.'",
                scorer=lambda answer, r: score_number(answer, r["answer"]))
    result = task.evaluate(backend, sample_ids=task.ids[:16])
    print(result.accuracy)
"""
from __future__ import annotations

import dataclasses
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Mapping, Sequence

from fishfarm.backends.protocol import Backend
from fishfarm.types import (GenerationRequest, Prompt, SamplingParams, SampleResult, Score,
                            TaskResult)

Record = Mapping[str, Any]
PromptFn = Callable[[Record], "Prompt | str"]
ScorerFn = Callable[[str, Record], Score]


class Task:
    """Evaluates a model on chosen samples of one dataset.

    Args:
        name: task name, used in results (e.g. "gsm8k").
        records: the samples, one mapping each.
        prompt: record -> `Prompt`, or a string taken as a one-turn user message.
        scorer: (answer text, record) -> `Score`.
        id_field: record field holding a unique sample id; default: the record's index.
        sampling: default decoding settings (paper: greedy, 512 new tokens).
        chat_template: a chat template for this task's chat prompts that do not bring their
            own (default: the tokenizer's).
        score_workers: threads that score answers in parallel (use several for code tasks,
            whose scorer waits on sandboxed subprocesses).
        official_scorer: the official code's verdict, (answer text, record) -> `Score`; when
            given, `evaluate` also reports "accuracy_official" (`fishfarm.scoring.official`).
        reference: record -> a correct answer as the model should write it (for next-token
            training: the LoRA baseline, Table 4's next-token rows).
    """

    def __init__(self, name: str, records: Sequence[Record], *, prompt: PromptFn | None = None,
                 scorer: ScorerFn | None = None, id_field: str | None = None,
                 sampling: SamplingParams = SamplingParams(), chat_template: str | None = None,
                 score_workers: int = 1, official_scorer: ScorerFn | None = None,
                 reference: Callable[[Record], str] | None = None):
        self.name = name
        self.records = list(records)
        self._prompt_fn, self._scorer_fn = prompt, scorer
        self.sampling = sampling
        self.chat_template = chat_template
        self.score_workers = score_workers
        self.official_scorer = official_scorer
        self._reference_fn = reference
        ids = [str(r[id_field]) if id_field else str(i) for i, r in enumerate(self.records)]
        if len(set(ids)) != len(ids):
            raise ValueError(f"task {name!r}: sample ids in field {id_field!r} are not unique; "
                             "pass another id_field, or none to use record indices")
        self.ids: tuple[str, ...] = tuple(ids)
        self._index = {sid: i for i, sid in enumerate(ids)}

    def __len__(self) -> int:
        return len(self.records)

    def __repr__(self) -> str:
        return f"Task({self.name!r}, {len(self)} samples)"

    def record(self, sample_id: str) -> Record:
        """Returns the record with this sample id."""
        try:
            return self.records[self._index[str(sample_id)]]
        except KeyError:
            raise KeyError(f"task {self.name!r} has no sample {sample_id!r}; "
                           f"ids look like {self.ids[:3]}") from None

    def build_prompt(self, record: Record) -> Prompt:
        """Returns the prompt for one record (override, or pass `prompt=` to the constructor)."""
        if self._prompt_fn is None:
            raise NotImplementedError(f"task {self.name!r}: pass prompt=... or override "
                                      "build_prompt in a subclass")
        prompt = self._prompt_fn(record)
        return Prompt.chat(prompt) if isinstance(prompt, str) else prompt

    def score_answer(self, answer: str, record: Record) -> Score:
        """Returns the score of one answer (override, or pass `scorer=` to the constructor)."""
        if self._scorer_fn is None:
            raise NotImplementedError(f"task {self.name!r}: pass scorer=... or override "
                                      "score_answer in a subclass")
        return self._scorer_fn(answer, record)

    def request(self, sample_id: str, *, sampling: SamplingParams | None = None
                ) -> GenerationRequest:
        """Returns the generation request for one sample (for trainers that generate themselves)."""
        prompt = self.build_prompt(self.record(sample_id))
        if self.chat_template and prompt.messages and prompt.chat_template is None:
            prompt = dataclasses.replace(prompt, chat_template=self.chat_template)
        return GenerationRequest(prompt, sampling or self.sampling)

    def score(self, sample_id: str, answer: str) -> Score:
        """Returns the score of `answer` to sample `sample_id`."""
        return self.score_answer(answer, self.record(sample_id))

    def reference_answer(self, sample_id: str) -> str:
        """Returns the reference answer of a sample (the continuation next-token training fits)."""
        if self._reference_fn is None:
            raise ValueError(f"task {self.name!r} has no reference answers, which next-token training needs; "
                             "build it with Task(..., reference=record -> answer text)")
        return self._reference_fn(self.record(sample_id))

    def score_official(self, sample_id: str, answer: str) -> bool | None:
        """Returns the official code's verdict on `answer` (None: the task has no official scorer)."""
        if self.official_scorer is None:
            return None
        return bool(self.official_scorer(answer, self.record(sample_id)).correct)

    def score_many(self, sample_ids: Sequence[str], answers: Sequence[str]) -> list[Score]:
        """Returns the scores of many answers, using `score_workers` threads."""
        if len(sample_ids) != len(answers):
            raise ValueError(f"got {len(sample_ids)} sample ids but {len(answers)} answers")
        if self.score_workers <= 1:
            return [self.score(s, a) for s, a in zip(sample_ids, answers)]
        with ThreadPoolExecutor(max_workers=self.score_workers) as pool:
            return list(pool.map(self.score, sample_ids, answers))

    def evaluate(self, backend: Backend, *, sample_ids: Sequence[str] | None = None,
                 sampling: SamplingParams | None = None, progress: bool | None = None
                 ) -> TaskResult:
        """Returns per-sample results and metrics of `backend` on the chosen samples.

        Args:
            backend: generates the answers (its model's current weights are used).
            sample_ids: which samples, in order; default: all.
            sampling: overrides the task's decoding settings.
            progress: show the backend's progress bar; None uses the backend's default.
        """
        ids = [str(s) for s in (self.ids if sample_ids is None else sample_ids)]
        requests = [self.request(s, sampling=sampling) for s in ids]
        generations = backend.generate(requests, progress=progress)
        scores = self.score_many(ids, [g.text for g in generations])
        official = [self.score_official(s, g.text) for s, g in zip(ids, generations)]
        samples = tuple(
            SampleResult(sample_id=s, answer=g.text, score=sc, finish_reason=g.finish_reason,
                         prompt_tokens=g.prompt_tokens, completion_tokens=len(g.token_ids), official=o)
            for s, g, sc, o in zip(ids, generations, scores, official))
        n_correct = sum(s.score.correct for s in samples)
        metrics = {"accuracy": n_correct / len(samples) if samples else 0.0,
                   "n": float(len(samples)), "n_correct": float(n_correct),
                   "truncated": sum(s.finish_reason == "length" for s in samples) / max(
                       len(samples), 1)}
        if self.official_scorer is not None:
            metrics["accuracy_official"] = sum(map(bool, official)) / len(samples) if samples else 0.0
        return TaskResult(task=self.name, metrics=metrics, samples=samples)
