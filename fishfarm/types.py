"""The vocabulary shared by backends, tasks and scorers: prompts, requests, results, scores.

All are frozen dataclasses, so a request can be hashed, grouped and logged as-is.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Mapping, Sequence

import torch

Role = Literal["system", "user", "assistant"]
FinishReason = Literal["eos", "stop", "length"]


@dataclass(frozen=True)
class Message:
    """One chat turn."""
    role: Role
    content: str


@dataclass(frozen=True)
class Prompt:
    """What the model is conditioned on: chat messages (rendered by a chat template) or raw text.

    Build one with `Prompt.chat` or `Prompt.raw`. Exactly one of `messages` and `text` is set.

    Args:
        messages: chat turns, rendered with `chat_template` or the tokenizer's own template.
            A last "assistant" turn is a response prefix: the model continues it (the official
            code tasks start the answer this way).
        text: raw text fed to the tokenizer as-is (special tokens such as BOS are added).
        chat_template: a Jinja chat template that replaces the tokenizer's for this prompt.
    """
    messages: tuple[Message, ...] = ()
    text: str | None = None
    chat_template: str | None = None

    def __post_init__(self) -> None:
        messages = as_messages(self.messages)
        object.__setattr__(self, "messages", messages)
        if bool(messages) == (self.text is not None):
            raise ValueError("Prompt needs exactly one of messages=... or text=...; "
                             "use Prompt.chat(question) or Prompt.raw(text)")
        if self.text is not None and self.chat_template is not None:
            raise ValueError("chat_template applies to messages only; drop it for Prompt.raw")

    @classmethod
    def chat(cls, user: str, *, system: str | None = None, response_prefix: str | None = None,
             chat_template: str | None = None) -> "Prompt":
        """Returns a one-turn chat prompt, with an optional system message and response prefix."""
        turns = ((Message("system", system),) if system is not None else ()) + (
            Message("user", user),)
        if response_prefix:
            turns += (Message("assistant", response_prefix),)
        return cls(messages=turns, chat_template=chat_template)

    @property
    def continues_response(self) -> bool:
        """Returns whether the last turn is an assistant prefix that the model continues."""
        return bool(self.messages) and self.messages[-1].role == "assistant"

    @classmethod
    def raw(cls, text: str) -> "Prompt":
        """Returns a prompt that is fed to the tokenizer without a chat template."""
        return cls(text=text)


@dataclass(frozen=True)
class SamplingParams:
    """How to decode. The paper decodes greedily (temperature 0) with 512 new tokens.

    Args:
        max_new_tokens: generation budget (paper: 512 for GSM8K/MBPP/ARC, 1024 for MATH).
        temperature: 0 means greedy; > 0 samples.
        top_p: nucleus sampling mass (1.0 = off); used only when sampling.
        stop: strings that end the answer; the answer text is cut before the first one.
        seed: seeds sampling so a call can be repeated exactly (same requests, same batch size).
    """
    max_new_tokens: int = 512
    temperature: float = 0.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "stop", tuple(self.stop))
        if self.max_new_tokens < 1 or self.temperature < 0 or not 0 < self.top_p <= 1:
            raise ValueError(f"invalid SamplingParams {self}: need max_new_tokens >= 1, "
                             "temperature >= 0 and 0 < top_p <= 1")


@dataclass(frozen=True)
class GenerationRequest:
    """One prompt to answer, with its decoding settings."""
    prompt: Prompt
    sampling: SamplingParams = SamplingParams()


@dataclass(frozen=True)
class GenerationResult:
    """One generated answer.

    Args:
        text: the decoded answer, special tokens removed, cut before the first stop string.
        token_ids: exactly the tokens the model produced (EOS included, padding not), for
            computing their log-probabilities later.
        finish_reason: "eos", "stop" (a stop string) or "length" (max_new_tokens reached).
        prompt_tokens: length of the tokenized prompt.
    """
    text: str
    token_ids: tuple[int, ...]
    finish_reason: FinishReason
    prompt_tokens: int


@dataclass(frozen=True)
class LogprobRequest:
    """A prompt and a continuation whose log-probability is wanted.

    Give the continuation as text, or as token ids (e.g. `GenerationResult.token_ids`, which
    avoids re-tokenization drift). Exactly one of the two is used: ids win when both are set.
    """
    prompt: Prompt
    continuation: str = ""
    continuation_ids: tuple[int, ...] | None = None


@dataclass(frozen=True)
class Logprobs:
    """Log-probabilities of a batch of continuations.

    Args:
        sums: (n,) summed log-probability of each continuation (differentiable when asked for).
        counts: (n,) number of continuation tokens.
        per_token: n tensors with the log-probability of each continuation token.
        log_dist: when asked for, (total continuation tokens, vocab) log-probabilities of every
            token at each continuation position, rows in the order of `per_token` (for a KL
            penalty between two models on the same continuations).
    """
    sums: torch.Tensor
    counts: torch.Tensor
    per_token: tuple[torch.Tensor, ...]
    log_dist: torch.Tensor | None = None

    def mean(self) -> torch.Tensor:
        """Returns (n,) mean log-probability per token (0 for empty continuations)."""
        return self.sums / self.counts.clamp(min=1)


@dataclass(frozen=True)
class Score:
    """A scorer's verdict on one answer.

    Args:
        correct: whether the answer is right.
        extracted: what the scorer read from the answer (a number, a letter, code), if anything.
        detail: why, in a few words (e.g. "no \\boxed{} answer", "timeout: ...").
    """
    correct: bool
    extracted: str | None = None
    detail: str = ""

    @property
    def reward(self) -> float:
        """Returns the paper's reward: +1 when correct, -1 otherwise (Section 3.2)."""
        return 1.0 if self.correct else -1.0


@dataclass(frozen=True)
class SampleResult:
    """One evaluated sample: the answer, its score, and how generation ended (`official`: the
    official code's verdict, where the task has an official scorer; None otherwise)."""
    sample_id: str
    answer: str
    score: Score
    finish_reason: FinishReason
    prompt_tokens: int
    completion_tokens: int
    official: bool | None = None


@dataclass(frozen=True)
class TaskResult:
    """Per-sample details and aggregate metrics of one evaluation.

    Args:
        task: task name.
        metrics: aggregates, at least "accuracy" (fraction correct) and "n".
        samples: one `SampleResult` per evaluated sample, in the order asked for.
    """
    task: str
    metrics: Mapping[str, float]
    samples: tuple[SampleResult, ...] = field(default=())

    @property
    def accuracy(self) -> float:
        """Returns the fraction of samples scored correct."""
        return float(self.metrics["accuracy"])

    def to_dict(self) -> dict[str, Any]:
        """Returns a JSON-serializable dict (for results files)."""
        return {"task": self.task, "metrics": dict(self.metrics),
                "samples": [asdict(s) for s in self.samples]}


def as_messages(turns: Sequence[Message | Mapping[str, str]]) -> tuple[Message, ...]:
    """Returns `turns` as Message objects (accepts {"role", "content"} dicts)."""
    return tuple(t if isinstance(t, Message) else Message(**t) for t in turns)
