"""Dispatch (pass 1): decide which expert answers a prompt.

`PromptDispatcher` is the paper's prompt-based strategy: the base model classifies the prompt
into code / math / reasoning / other with the boxed classification prompt
(`fishfarm.data.prompts.cls_prompt`). Two ways to read its decision:
- "generate" (as in the paper and the official code): generate, take the last \\boxed{};
  anything that is not a category counts as "other".
- "choice": compare the log-likelihood of each category word after "Classification: \\boxed{"
  and take the most likely. When the categories start with different tokens (they do for the
  paper's four with Llama, Mistral, Qwen2 and SmolLM2 tokenizers) only the first token is scored,
  which costs one forward pass per prompt; otherwise each whole word is scored. Small models often do not follow the format (SmolLM2-135M:
  5.8% in "generate" mode on the tiny classification task); this reads the same prompt's
  preference without depending on it.
"""
from __future__ import annotations

from typing import Sequence

import torch

from fishfarm.data.prompts import CLS_CATEGORIES, CLS_RESPONSE_PREFIX, cls_prompt
from fishfarm.scoring import last_boxed
from fishfarm.types import GenerationRequest, LogprobRequest, SamplingParams

DISPATCH_MODES = ("choice", "generate")


class PromptDispatcher:
    """Classifies prompts with the base model and the paper's classification prompt.

    Args:
        backend: a fishfarm backend over the base model (apply no expert while classifying).
        mode: "choice" | "generate" (module docstring).
        categories: the labels it may answer; the paper's four by default.
        max_new_tokens: answer budget in "generate" mode (the answer is primed up to "\\boxed{").
    """

    def __init__(self, backend, *, mode: str = "choice", categories: Sequence[str] = CLS_CATEGORIES,
                 max_new_tokens: int = 8):
        if mode not in DISPATCH_MODES:
            raise ValueError(f"unknown dispatch mode {mode!r}; choose one of {DISPATCH_MODES}")
        self.backend, self.mode, self.categories = backend, mode, tuple(categories)
        self.max_new_tokens = max_new_tokens

    def classify(self, questions: Sequence[str]) -> list[str]:
        """Returns one category per question."""
        if self.mode == "generate":
            sampling = SamplingParams(max_new_tokens=self.max_new_tokens)
            results = self.backend.generate([GenerationRequest(cls_prompt(q), sampling) for q in questions],
                                            progress=False)
            out = []
            for r in results:
                boxed = last_boxed(CLS_RESPONSE_PREFIX + r.text)
                label = boxed.strip().strip("'\"").lower() if boxed is not None else ""
                out.append(label if label in self.categories else "other")
            return out
        first = self._first_tokens()
        if first is not None:
            scores = self.backend.next_token_logprobs([cls_prompt(q) for q in questions])[:, first]
        else:
            requests = [LogprobRequest(cls_prompt(q), f"{c}}}") for q in questions for c in self.categories]
            scores = self.backend.logprobs(requests).sums.view(len(questions), len(self.categories))
        return [self.categories[i] for i in scores.argmax(dim=1).tolist()]

    def _first_tokens(self) -> list[int] | None:
        """Returns each category's first token id if they all differ and the backend can score them."""
        tokenizer = getattr(self.backend, "tokenizer", None)
        if tokenizer is None or not hasattr(self.backend, "next_token_logprobs"):
            return None
        first = [tokenizer(c, add_special_tokens=False)["input_ids"][0] for c in self.categories]
        return first if len(set(first)) == len(first) else None


def confusion(gold: Sequence[str], predicted: Sequence[str], *, rows: Sequence[str],
              cols: Sequence[str]) -> torch.Tensor:
    """Returns counts[i, j] of samples whose gold label is rows[i] and prediction cols[j]."""
    counts = torch.zeros(len(rows), len(cols), dtype=torch.long)
    for g, p in zip(gold, predicted):
        counts[rows.index(g), cols.index(p)] += 1
    return counts
