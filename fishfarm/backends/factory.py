"""The backend registry and the one factory that builds a backend by name.

    backend = make_backend("hf", model, tokenizer, batch_size=64)

A new backend is one module in this package (a class that keeps the `Backend` protocol, with a
`name` and an `available()` class method) plus one line in `BACKENDS`. Classes are named by
import path, so a backend's heavy dependencies (vllm) load only when it is chosen.
"""
from __future__ import annotations

import importlib

# name -> "module:Class". "auto" takes the first entry, in this order, that can run here and is
# worth it (`auto_available()` where a class has one, else `available()`): vLLM on a CUDA GPU, else HF.
BACKENDS: dict[str, str] = {
    "vllm": "fishfarm.backends.vllm:VLLMBackend",
    "hf": "fishfarm.backends.hf:HFBackend",
}
BACKEND_CHOICES = (*BACKENDS, "auto")


class BackendUnavailableError(RuntimeError):
    """The chosen backend cannot run here (a missing package, no GPU); the message says which."""


def backend_class(name: str) -> type:
    """Returns the class registered as `name` (imports its module)."""
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; choose one of {', '.join(BACKEND_CHOICES)}")
    module, cls = BACKENDS[name].split(":")
    return getattr(importlib.import_module(module), cls)


def resolve_backend(name: str) -> str:
    """Returns the registered backend `name` stands for ("auto": the first one available here).

    Raises:
        BackendUnavailableError: the named backend cannot run on this machine, and why.
    """
    if name == "auto":
        for candidate in BACKENDS:
            cls = backend_class(candidate)
            if getattr(cls, "auto_available", cls.available)() is None:
                return candidate
        raise BackendUnavailableError("no registered backend can run here")  # hf always can
    reason = backend_class(name).available()
    if reason is not None:
        raise BackendUnavailableError(f"backend {name!r} cannot run here: {reason}")
    return name


def make_backend(name: str, model, tokenizer, **options):
    """Returns a backend over `model` (kept by reference) built by the class registered as `name`.

    Args:
        name: a key of `BACKENDS`, or "auto".
        model: the live HF model (its weights are the base model's, or an expert's).
        tokenizer: its tokenizer.
        **options: the backend's own settings (HF: batch_size, max_batch_tokens,
            logprob_batch_size, progress, min_shared_prefix; vLLM also: max_model_len,
            gpu_memory_utilization, tensor_parallel_size, enforce_eager, model_path, seed).
    """
    return backend_class(resolve_backend(name))(model, tokenizer, **options)
