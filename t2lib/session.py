"""The preset's base model, its SVD, the SVF wrapper and the backend, loaded once.

    session = Session(get_preset("tiny"))
    session.svf.apply(expert); session.backend.generate(...)

`preset_backend` is the one place a preset's backend is built (the factory in
`fishfarm.backends`, with the preset's batch sizes and its `backend_options`); `Session` attaches
it to the SVF wrapper, so every expert applied, mixed, written for a rollout or removed reaches the
backend. A backend with its own copy of the weights (vLLM) computes no gradients: the session then
also keeps an HF backend over the same model for training (`Session.grad_backend`).
"""
from __future__ import annotations

from dataclasses import replace

from t2lib.core.models import LoadedModel
from t2lib.presets import Preset


def preset_backend(preset: Preset, lm: LoadedModel, *, progress: bool = True, backend: str | None = None):
    """Returns the preset's backend over `lm` (`backend` overrides `preset.backend`; "auto" is
    resolved here), built with the preset's batch sizes and its options for that backend."""
    from fishfarm.backends import make_backend, resolve_backend

    name = resolve_backend(backend or preset.backend)
    return make_backend(name, lm.model, lm.tokenizer, batch_size=preset.batch_size,
                        max_batch_tokens=preset.max_batch_tokens, logprob_batch_size=preset.logprob_batch_size,
                        progress=progress, **preset.backend_options.get(name, {}))


class Session:
    """The preset's base model, SVF wrapper and backend, loaded once for several experts or strategies.

    Attributes: preset (its backend resolved: never "auto"), lm (`LoadedModel`), svf (`SVFModel`,
    with the backend attached), backend, backend_name, grad_backend (the backend that computes
    gradients: `backend` itself when it reads the model's tensors, else an HF backend over them).
    """

    def __init__(self, preset: Preset, *, progress: bool = True):
        from fishfarm.backends import make_backend, resolve_backend
        from t2lib.core.svd import decompose
        from t2lib.core.svf import SVFModel

        self.backend_name = resolve_backend(preset.backend)  # a missing vllm fails here, before the model loads
        self.preset = preset = replace(preset, backend=self.backend_name)
        self.lm = preset.load_model()
        decomp = decompose(self.lm.model, preset.targets, storage_dtype=preset.svd_storage_dtype,
                           progress=progress)
        self.svf = SVFModel(self.lm.model, decomp, model_id=preset.model, base_variant=self.lm.resolved.variant)
        self.backend = preset_backend(preset, self.lm, progress=progress)
        self.svf.attach(self.backend)
        self.grad_backend = self.backend if self.backend.shares_weights else make_backend(
            "hf", self.lm.model, self.lm.tokenizer, batch_size=preset.batch_size,
            max_batch_tokens=preset.max_batch_tokens, logprob_batch_size=preset.logprob_batch_size, progress=progress)
