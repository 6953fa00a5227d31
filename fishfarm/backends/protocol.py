"""The contract every generation backend keeps: everything the kit calls on a backend is here.

A backend generates and scores with one model. The kit changes that model's target matrices
all the time (an expert applied, a mixture tried, z written for a rollout, the base restored),
so the contract has a weight-sync hand-off: whoever changes the live weights calls
`sync_weights` with the changed tensors. In the kit that caller is always `t2lib.core.svf.SVFModel`
(every write it makes ends in a sync of the backends attached to it), so a trainer, an adapter or
the explorer cannot forget it. A backend that reads the model's own tensors (HF) has nothing to
do; one that keeps its own copy of the weights (a vLLM engine) loads the tensors it is given.
"""
from __future__ import annotations

from typing import Mapping, Protocol, Sequence, runtime_checkable

import torch

from fishfarm.types import GenerationRequest, GenerationResult, LogprobRequest, Logprobs, Prompt


@runtime_checkable
class Backend(Protocol):
    """Generates answers and scores continuations with one model.

    Implementations are registered in `fishfarm.backends.factory.BACKENDS` and built by
    `make_backend`. Attributes every backend has:

    - ``tokenizer``: the HF tokenizer of the model (callers read token ids of one-token answers);
    - ``device``: where the backend's inputs go (for seeding and placing tensors);
    - ``shares_weights``: True when the backend reads the model's live tensors, so that
      `sync_weights` has nothing to copy.
    """

    tokenizer: object
    shares_weights: bool

    @property
    def device(self) -> torch.device: ...

    def render(self, prompt: Prompt) -> str:
        """Returns the prompt as the text the model reads (chat template applied)."""
        ...

    def encode(self, prompt: Prompt) -> list[int]:
        """Returns the prompt's token ids, exactly as `generate` and `logprobs` feed them."""
        ...

    def generate(self, requests: Sequence[GenerationRequest], *,
                 progress: bool | None = None) -> list[GenerationResult]:
        """Returns one result per request, in order.

        Args:
            requests: prompts with their sampling settings; they may differ per request.
            progress: show a progress bar; None uses the backend's default.
        """
        ...

    def logprobs(self, requests: Sequence[LogprobRequest], *, grad: bool = False,
                 distributions: bool = False) -> Logprobs:
        """Returns the log-probabilities of each request's continuation given its prompt.

        Args:
            requests: prompt + continuation pairs.
            grad: keep the autograd graph so the caller can backpropagate to the weights; the
                caller then passes one micro-batch per call. A backend that cannot (vLLM)
                raises `NotImplementedError` naming the backend that can.
            distributions: also return the full next-token distribution at every continuation
                position (`Logprobs.log_dist`).
        """
        ...

    def next_token_logprobs(self, prompts: Sequence[Prompt]) -> torch.Tensor:
        """Returns (n, vocab) log-probabilities of the token that follows each prompt."""
        ...

    def sync_weights(self, weights: Mapping[str, torch.Tensor]) -> None:
        """Takes the new values of target matrices that just changed in the model.

        Args:
            weights: parameter name (as in ``model.named_parameters()``) -> its live tensor,
                already holding the new values. Called after every change, with every matrix
                that changed; the backend answers with these weights from its next call on.
        """
        ...
