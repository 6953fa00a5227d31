"""The model families the kit runs: one table, read by t2lib (which models it loads and trains
experts for) and by the HF backend's lean decoding loop (which of them it decodes).

Every family here names its decoder layers' matrices as Llama does (`mlp.{gate,up,down}_proj`,
`self_attn.{q,k,v,o}_proj`), so SVF can target them with no other change.

To add a model family:
1. add a `ModelFamily` row to `MODEL_FAMILIES` below: its HF `model_type`, the transformers module
   that defines its model classes, its RMSNorm class's name there, and whether `LeanDecoder` runs
   it (pre-norm layers, rotary embedding, grouped-query attention, no per-head q/k norms; other
   models fall back to `generate`);
2. only if its layers name their matrices otherwise: the target names of t2lib's SVD
   (`TARGET_SETS` in `t2lib/core/svd.py`) and the fused groups of the vLLM backend
   (`FUSED_GROUPS` in `fishfarm/backends/vllm.py`);
3. a test: with `lean_decoding`, a tiny random model of the family decoded against `generate`
   (`tests/test_fishfarm_decoding.py`, as Qwen2 and Mistral are).
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType


@dataclass(frozen=True)
class ModelFamily:
    """One model family.

    Args:
        model_type: the `model_type` of its HF config.
        modeling_module: the transformers module that defines its model classes (the lean loop
            takes the family's rotary function and RMSNorm class from it).
        rms_norm: the name of its RMSNorm class in that module (weight * x / sqrt(mean(x²) + eps),
            in fp32; the lean loop runs it as one `F.rms_norm` call).
        lean_decoding: whether `fishfarm.backends.decoding.LeanDecoder` decodes it.
    """
    model_type: str
    modeling_module: str
    rms_norm: str
    lean_decoding: bool

    def modeling(self) -> ModuleType:
        """Returns the transformers module that defines the family's model classes."""
        return importlib.import_module(self.modeling_module)


MODEL_FAMILIES: dict[str, ModelFamily] = {f.model_type: f for f in (
    ModelFamily("llama", "transformers.models.llama.modeling_llama", "LlamaRMSNorm", lean_decoding=True),
    ModelFamily("mistral", "transformers.models.mistral.modeling_mistral", "MistralRMSNorm", lean_decoding=True),
    ModelFamily("qwen2", "transformers.models.qwen2.modeling_qwen2", "Qwen2RMSNorm", lean_decoding=True),
    # Qwen3 normalizes each q and k head before the rotary embedding, which the lean loop does not.
    ModelFamily("qwen3", "transformers.models.qwen3.modeling_qwen3", "Qwen3RMSNorm", lean_decoding=False),
)}

SUPPORTED_MODEL_TYPES: tuple[str, ...] = tuple(MODEL_FAMILIES)
LEAN_DECODING_TYPES: tuple[str, ...] = tuple(t for t, f in MODEL_FAMILIES.items() if f.lean_decoding)
