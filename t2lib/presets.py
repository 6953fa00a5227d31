"""Presets: one typed configuration per scale (smoke, tiny, paper). See the README's preset table."""
from __future__ import annotations

from dataclasses import dataclass, replace

from t2lib.models import DEFAULT_MODEL


@dataclass(frozen=True)
class Preset:
    """Settings shared by every notebook for one scale.

    Args:
        name: "smoke" | "tiny" | "paper".
        model: base model hub id or local folder.
        targets: target set for SVF (paper default: MLP gate/up/down).
        dtype: model dtype; "auto" is fp32 on the CPU, bf16 on a GPU.
        svd_storage_dtype: dtype of the cached U and Vᵀ ("bfloat16" halves the cache at 8B scale).
        inspect_prompts: prompts used to show what scaling singular values does (notebook 01).
        inspect_max_new_tokens: answer length in that demonstration.
        suite: which tasks experts and adaptation use: "tiny" (fishfarm.tiny) or "paper".
        eval_limit: samples per evaluation (None: the whole split).
        paper_eval_limit: samples of each paper task in the baseline (None: the whole test split).
        paper_max_new_tokens: answer budget on paper tasks (None: the paper's 512 / 1024).
        batch_size: prompts per generation batch.
        max_batch_tokens: cap on a batch's padded prompt tokens (long prompts: smaller batches).
        logprob_batch_size: sequences per forward pass when only scoring.
    """

    name: str
    model: str = DEFAULT_MODEL
    targets: str = "mlp"
    dtype: str = "auto"
    svd_storage_dtype: str = "float32"
    inspect_prompts: int = 6
    inspect_max_new_tokens: int = 48
    suite: str = "tiny"
    eval_limit: int | None = None
    paper_eval_limit: int | None = 10
    paper_max_new_tokens: int | None = 64
    batch_size: int = 64
    max_batch_tokens: int | None = 6144
    logprob_batch_size: int = 16


PRESETS: dict[str, Preset] = {
    "smoke": Preset("smoke", inspect_prompts=2, inspect_max_new_tokens=8, eval_limit=4, paper_eval_limit=2,
                    paper_max_new_tokens=16),
    "tiny": Preset("tiny"),
    "paper": Preset("paper", model="meta-llama/Meta-Llama-3-8B-Instruct", svd_storage_dtype="bfloat16",
                    inspect_prompts=6, inspect_max_new_tokens=128, suite="paper", paper_eval_limit=None,
                    paper_max_new_tokens=None, batch_size=64),
}


def get_preset(name: str, **overrides) -> Preset:
    """Returns the preset `name`, with any field overridden by keyword."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset '{name}'; choose one of {', '.join(PRESETS)}")
    return replace(PRESETS[name], **overrides)
