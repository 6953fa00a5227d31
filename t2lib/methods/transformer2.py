"""The two-pass Transformer² model (paper §3.2): pass 1 adapts, pass 2 answers.

    t2 = Transformer2(svf, backend, experts={"math": m, "code": c, "reasoning": r}, strategy="prompt")
    reply = t2.answer("Tom has 3 apples and buys 4 more. How many apples does he have?")
    reply.label, reply.text, reply.first_pass_s, reply.second_pass_s

Pass 1 is an adaptation strategy from the registry in `t2lib.methods.strategies` ("base", "prompt",
"cls-expert", "few-shot"; see each module there). Few-shot first needs `prepare(task, shot_ids)`.
`evaluate` runs both passes over a task in batches and reports their times separately (the
paper's Table 3); several strategies can share their pass-2 answers (`answers=`).
"""
from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Mapping, Sequence

from fishfarm.task import Task
from fishfarm.types import GenerationRequest, Prompt, SampleResult, SamplingParams
from t2lib.methods.cem import CEMConfig
from t2lib.core.experts import Expert
from t2lib.core.fingerprint import fingerprint
from t2lib.methods.strategies import STRATEGIES, AdaptationContext, make_strategy
from t2lib.core.svf import SVFModel

__all__ = ["STRATEGIES", "Reply", "Transformer2", "TwoPassResult", "question_text"]


@dataclass
class Reply:
    """One two-pass answer: the text, what pass 1 chose, and the time of each pass (seconds)."""
    text: str
    label: str
    first_pass_s: float
    second_pass_s: float


@dataclass
class TwoPassResult:
    """A strategy's evaluation on a task.

    Args:
        labels: what pass 1 chose for each sample ("math", ..., "other", or "mixture").
        first_pass_s / second_pass_s: wall time of dispatch (or the α search) and of answering.
        prepared: what the strategy's `prepare` found on the task (few-shot: its `CEMResult`).
        summary: the same as plain data for results files (few-shot: "alpha", "cem").
    """
    task: str
    strategy: str
    accuracy: float
    samples: tuple[SampleResult, ...]
    labels: list[str]
    first_pass_s: float
    second_pass_s: float
    prepared: object | None = None
    summary: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)


def question_text(prompt: Prompt) -> str:
    """Returns the text pass 1 classifies: the last user message, or the raw text."""
    if prompt.text is not None:
        return prompt.text
    users = [m.content for m in prompt.messages if m.role == "user"]
    if not users:
        raise ValueError("the prompt has no user message to classify")
    return users[-1]


class Transformer2:
    """A base model, its experts, and one adaptation strategy.

    Args:
        svf: the base model wrapped for SVF.
        backend: generates with the live model.
        experts: category -> expert ("math", "code", "reasoning"); dispatch labels without an
            expert ("other") are answered by the base model.
        strategy: a name in `t2lib.methods.strategies.STRATEGIES`.
        cls_expert: the classification expert ("cls-expert" strategy).
        dispatch_mode: how the base model's reading of the classification prompt is taken
            ("prompt" strategy): "choice" or "generate" (`t2lib.methods.dispatch`).
        cls_dispatch_mode: the same for the classification expert (default "generate", the
            reading it was trained for).
        cem: settings of the few-shot search.
        answers: a dict shared by several `Transformer2` (one per strategy) over the same
            model: pass-2 answers are kept in it per (weights, task, sample), so a sample two
            strategies send to the same expert (or both to the base model) is answered once.
            Each kept answer carries the seconds it took (its batch's time over its size),
            which count in the pass-2 time of every strategy that uses it.
    """

    def __init__(self, svf: SVFModel, backend, experts: Mapping[str, Expert], *, strategy: str = "prompt",
                 cls_expert: Expert | None = None, dispatch_mode: str = "choice", cls_dispatch_mode: str = "generate",
                 cem: CEMConfig | None = None, progress: bool = True, answers: dict | None = None):
        for expert in list(experts.values()) + ([cls_expert] if cls_expert else []):
            expert.check_compatible(svf.decomp, model_id=svf.model_id)
        self.svf, self.backend, self.experts = svf, backend, dict(experts)
        self.context = AdaptationContext(svf, backend, self.experts, cls_expert=cls_expert,
                                         dispatch_mode=dispatch_mode, cls_dispatch_mode=cls_dispatch_mode,
                                         cem=cem or CEMConfig(), progress=progress)
        self.strategy = make_strategy(strategy, self.context)
        self.progress = progress
        self.answers = {} if answers is None else answers

    # ---------------------------------------------------------------- pass 1
    def dispatch(self, questions: Sequence[str]) -> list[str]:
        """Returns pass 1's label for each question ("mixture" for few-shot, "base" for base)."""
        return self.strategy.dispatch(questions)

    def prepare(self, task: Task, shot_ids: Sequence[str] = ()) -> object | None:
        """Pass 1 on the task as a whole (few-shot: searches α on the shots); returns what it found."""
        return self.strategy.prepare(task, shot_ids)

    def expert_for(self, label: str) -> Expert | None:
        """Returns the expert that answers prompts labelled `label` (None: the base model)."""
        return self.strategy.expert_for(label)

    # ---------------------------------------------------------------- pass 2
    def answer(self, prompt: str | Prompt, *, sampling: SamplingParams = SamplingParams()) -> Reply:
        """Returns the two-pass answer to one prompt (a string is one user turn)."""
        if isinstance(prompt, str):
            if not prompt.strip():
                raise ValueError("the prompt is empty: there is nothing to dispatch or answer; pass a question")
            prompt = Prompt.chat(prompt)
        start = time.perf_counter()
        label = self.dispatch([question_text(prompt)])[0]
        middle = time.perf_counter()
        with self.svf.using(self.expert_for(label)):
            text = self.backend.generate([GenerationRequest(prompt, sampling)], progress=False)[0].text
        return Reply(text, label, middle - start, time.perf_counter() - middle)

    def evaluate(self, task: Task, sample_ids: Sequence[str], *, shot_ids: Sequence[str] = ()) -> TwoPassResult:
        """Returns the accuracy of both passes on `sample_ids` of `task`, with their times.

        A strategy that uses shots (few-shot) adapts on `shot_ids` first (its pass 1); they must
        not overlap `sample_ids`.
        """
        ids = [str(s) for s in sample_ids]
        if self.strategy.uses_shots:
            overlap = set(map(str, shot_ids)) & set(ids)
            if overlap:
                raise ValueError(f"{len(overlap)} shots are also scored samples (e.g. {sorted(overlap)[0]}); "
                                 "score few-shot on the test split minus the shots (t2lib.samples.draw_shots)")
        start = time.perf_counter()
        prepared = self.prepare(task, shot_ids)
        labels = self.dispatch([question_text(task.request(s).prompt) for s in ids])
        first = time.perf_counter() - start
        groups: dict[str, list[str]] = defaultdict(list)
        for sid, label in zip(ids, labels):
            groups[label].append(sid)
        by_id: dict[str, SampleResult] = {}
        second, reused = 0.0, 0
        for label, group in groups.items():
            expert = self.expert_for(label)
            weights = "base" if expert is None else fingerprint(expert.z.items())
            todo = [s for s in group if (weights, task.name, s) not in self.answers]
            reused += len(group) - len(todo)
            if todo:
                start = time.perf_counter()
                with self.svf.using(expert):
                    result = task.evaluate(self.backend, sample_ids=todo, progress=self.progress)
                each = (time.perf_counter() - start) / len(todo)
                for sample in result.samples:
                    self.answers[(weights, task.name, sample.sample_id)] = (sample, each)
            for sid in group:
                by_id[sid], seconds = self.answers[(weights, task.name, sid)]
                second += seconds
        samples = tuple(by_id[s] for s in ids)
        accuracy = sum(s.score.correct for s in samples) / len(samples) if samples else 0.0
        return TwoPassResult(task.name, self.strategy.name, accuracy, samples, labels, first, second,
                             prepared=prepared, summary=self.strategy.summary(),
                             extra={"reused_answers": reused})
