"""The preset's base model, its SVD, the SVF wrapper and the backend, loaded once.

    session = Session(get_preset("tiny"))
    session.svf.apply(expert); session.backend.generate(...)

`preset_backend` is the one place a preset's backend is built (the factory in
`fishfarm.backends`, with the preset's batch sizes); `Session` attaches it to the SVF wrapper, so
every expert applied, mixed, written for a rollout or removed reaches the backend.
"""
from __future__ import annotations

from t2lib.models import LoadedModel
from t2lib.presets import Preset


def preset_backend(preset: Preset, lm: LoadedModel, *, progress: bool = True, backend: str | None = None):
    """Returns the preset's backend over `lm` (`backend` overrides `preset.backend`)."""
    from fishfarm.backends import make_backend

    return make_backend(backend or preset.backend, lm.model, lm.tokenizer, batch_size=preset.batch_size,
                        max_batch_tokens=preset.max_batch_tokens, logprob_batch_size=preset.logprob_batch_size,
                        progress=progress)


class Session:
    """The preset's base model, SVF wrapper and backend, loaded once for several experts or strategies.

    Attributes: preset, lm (`LoadedModel`), svf (`SVFModel`, with the backend attached), backend.
    """

    def __init__(self, preset: Preset, *, progress: bool = True):
        from t2lib.svd import decompose
        from t2lib.svf import SVFModel

        self.preset = preset
        self.lm = preset.load_model()
        decomp = decompose(self.lm.model, preset.targets, storage_dtype=preset.svd_storage_dtype,
                           progress=progress)
        self.svf = SVFModel(self.lm.model, decomp, model_id=preset.model, base_variant=self.lm.resolved.variant)
        self.backend = preset_backend(preset, self.lm, progress=progress)
        self.svf.attach(self.backend)
