"""The two-pass Transformer² model (paper §3.2): pass 1 adapts, pass 2 answers.

    t2 = Transformer2(svf, backend, experts={"math": m, "code": c, "reasoning": r}, strategy="prompt")
    reply = t2.answer("Tom has 3 apples and buys 4 more. How many apples does he have?")
    reply.label, reply.text, reply.first_pass_s, reply.second_pass_s

Pass 1 is an adaptation strategy from the registry in `t2lib.methods.strategies` ("base", "prompt",
"cls-expert", "few-shot"; see each module there). Few-shot first needs `prepare(task, shot_ids)`.
`evaluate` runs both passes over a task in batches and reports their times separately (the
paper's Table 3); several strategies can share their pass-2 answers (`answers=`).

Pass 2 has two paths. In place (the default, exact): each expert is applied to the live weights
and its prompts answered, one backend call per expert. Adapters (a backend that serves LoRA
adapters per request: `VLLMBackend(enable_lora=True)`, `--expert-adapters RANK`): every expert is
an adapter folder (`t2lib.methods.adapters`) and all the prompts, whatever their expert, the base
model's included, are one backend call with no weight reload; what each adapter truncates is
logged and kept in `TwoPassResult.extra["adapters"]`.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Mapping, Sequence

from fishfarm.task import Task
from fishfarm.types import GenerationRequest, Prompt, SampleResult, SamplingParams
from t2lib.methods.adapters import ExpertAdapters
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
        adapters: how pass 2 gets the experts' weights (module docstring): None follows the
            backend (adapters at its `max_lora_rank` when it serves them, `backend.serves_adapters`,
            else in place); False: in place; an `ExpertAdapters`: through those adapters (e.g. one
            that truncates by energy).
    """

    def __init__(self, svf: SVFModel, backend, experts: Mapping[str, Expert], *, strategy: str = "prompt",
                 cls_expert: Expert | None = None, dispatch_mode: str = "choice", cls_dispatch_mode: str = "generate",
                 cem: CEMConfig | None = None, progress: bool = True, answers: dict | None = None,
                 adapters: ExpertAdapters | bool | None = None):
        for expert in list(experts.values()) + ([cls_expert] if cls_expert else []):
            expert.check_compatible(svf.decomp, model_id=svf.model_id)
        self.svf, self.backend, self.experts = svf, backend, dict(experts)
        if adapters is True or adapters is None and getattr(backend, "serves_adapters", False):
            adapters = ExpertAdapters(svf.decomp, rank=getattr(backend, "max_lora_rank", None) or 1)
        adapters = adapters or None  # False: in place
        if adapters is not None and not getattr(backend, "serves_adapters", False):
            raise ValueError(f"pass 2 through adapters needs a backend that serves them per request; "
                             f"{type(backend).__name__} does not: use the vLLM backend with enable_lora=True "
                             "(--backend vllm --expert-adapters RANK), or drop adapters= to apply experts in place")
        self.adapters = adapters
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
        text = self.second_pass([GenerationRequest(prompt, sampling)], [label], progress=False)[0].text
        return Reply(text, label, middle - start, time.perf_counter() - middle)

    def second_pass(self, requests: Sequence[GenerationRequest], labels: Sequence[str], *,
                    progress: bool | None = None) -> list:
        """Returns the answers (`GenerationResult`) to `requests`, each from the expert its label
        names (`expert_for`): one backend call through adapters (the engine's own weights the base
        model's), else one call per expert with the expert applied in place."""
        if self.adapters is not None:
            folders = [self.adapters.folder_for(self.expert_for(label)) for label in labels]
            with self.svf.using(None):  # adapters are changes to the base weights
                return self.backend.generate(requests, progress=progress, adapters=folders)
        out = [None] * len(requests)
        for label in dict.fromkeys(labels):
            rows = [i for i, other in enumerate(labels) if other == label]
            with self.svf.using(self.expert_for(label)):
                for i, result in zip(rows, self.backend.generate([requests[i] for i in rows], progress=progress)):
                    out[i] = result
        return out

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
        keys = {label: self._weights_key(self.expert_for(label)) for label in set(labels)}
        todo = {sid: label for sid, label in zip(ids, labels) if (keys[label], task.name, sid) not in self.answers}
        reused = len(ids) - len(todo)
        batches = [list(todo)] if self.adapters is not None else [
            [s for s, other in todo.items() if other == label] for label in dict.fromkeys(todo.values())]
        for batch in batches:  # adapters: one batch for every expert; in place: one per expert
            if not batch:
                continue
            start = time.perf_counter()
            routed = _Routed(self, [todo[s] for s in batch])
            result = task.evaluate(routed, sample_ids=batch, progress=self.progress)
            each = (time.perf_counter() - start) / len(batch)
            for sample in result.samples:
                self.answers[(keys[todo[sample.sample_id]], task.name, sample.sample_id)] = (sample, each)
        kept = [self.answers[(keys[label], task.name, sid)] for sid, label in zip(ids, labels)]
        samples = tuple(sample for sample, _ in kept)
        second = sum(seconds for _, seconds in kept)
        accuracy = sum(s.score.correct for s in samples) / len(samples) if samples else 0.0
        extra = {"reused_answers": reused}
        if self.adapters is not None:
            extra["adapters"] = self.adapters.report()
        return TwoPassResult(task.name, self.strategy.name, accuracy, samples, labels, first, second,
                             prepared=prepared, summary=self.strategy.summary(), extra=extra)

    def _weights_key(self, expert: Expert | None) -> str:
        """Returns what names the weights that answer with `expert` in `answers`: its z, and its
        adapter's truncation on the adapter path (a truncated expert answers differently)."""
        if expert is None:
            return "base"
        if self.adapters is not None:
            return f"adapter:{self.adapters.key(expert)}"
        return fingerprint(expert.z.items())


class _Routed:
    """A view of a `Transformer2`'s backend for `Task.evaluate`: its `generate` answers the i-th
    request with the expert of the i-th label (`Transformer2.second_pass`)."""

    def __init__(self, t2: Transformer2, labels: Sequence[str]):
        self.t2, self.labels = t2, list(labels)

    def generate(self, requests: Sequence[GenerationRequest], *, progress: bool | None = None):
        return self.t2.second_pass(requests, self.labels, progress=progress)
