"""Generation backends: one protocol (`protocol`), one module per backend (`hf`, `vllm`), one factory.

The HF backend's lean decoding loop is `decoding` (its steps) over `decoding_plan` (how each layer
runs in a call), `kv_cache`, `onednn` (the CPU product kernel) and `batching` (padding, shared
prefixes); `families` is the one table of the model families the kit runs.

    from fishfarm.backends import make_backend
    backend = make_backend("hf", model, tokenizer)     # HF transformers over the live model
    backend = make_backend("vllm", model, tokenizer)   # a vLLM engine, experts synced into it
"""
from fishfarm.backends.factory import (BACKEND_CHOICES, BACKENDS, BackendUnavailableError, backend_class,
                                       make_backend, resolve_backend)
from fishfarm.backends.protocol import Backend

__all__ = ["BACKEND_CHOICES", "BACKENDS", "Backend", "BackendUnavailableError", "HFBackend", "backend_class",
           "make_backend", "resolve_backend"]


def __getattr__(name: str):
    # HFBackend pulls in transformers (seconds to import); scoring-only users never pay for it.
    if name == "HFBackend":
        from fishfarm.backends.hf import HFBackend
        return HFBackend
    raise AttributeError(f"module 'fishfarm.backends' has no attribute {name!r}")
