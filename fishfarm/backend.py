"""The interface every generation backend implements (HF transformers now, vLLM later).

A backend wraps a live model: it answers with whatever weights the model holds at call time, so
applying or removing an expert between two calls changes the answers without a reload.
"""
from __future__ import annotations

from typing import Protocol, Sequence, runtime_checkable

from fishfarm.types import GenerationRequest, GenerationResult, LogprobRequest, Logprobs


@runtime_checkable
class Backend(Protocol):
    """Generates answers and scores continuations with one model.

    Implementations: `fishfarm.hf_backend.HFBackend`. A vLLM backend must accept updated
    weights in place (DESIGN.md) and may refuse ``logprobs(..., grad=True)``.
    """

    def generate(self, requests: Sequence[GenerationRequest], *,
                 progress: bool | None = None) -> list[GenerationResult]:
        """Returns one result per request, in order.

        Args:
            requests: prompts with their sampling settings; they may differ per request.
            progress: show a progress bar; None uses the backend's default.
        """
        ...

    def logprobs(self, requests: Sequence[LogprobRequest], *, grad: bool = False) -> Logprobs:
        """Returns the log-probabilities of each request's continuation given its prompt.

        Args:
            requests: prompt + continuation pairs.
            grad: keep the autograd graph so the caller can backpropagate to the weights; the
                caller then passes one micro-batch per call.
        """
        ...
