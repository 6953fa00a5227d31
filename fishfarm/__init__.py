"""fishfarm: evaluation for the Transformer² kit — tasks, scorers, generation backends, sandbox.

    from fishfarm import Task, Prompt, SamplingParams, make_backend
    from fishfarm.scoring import score_number

    backend = make_backend("hf", model, tokenizer)   # uses the model's live weights
    task = Task("gsm8k", records, prompt=lambda r: r["question"],
                scorer=lambda answer, r: score_number(answer, r["answer"]))
    result = task.evaluate(backend, sample_ids=task.ids[:16])
"""
from fishfarm.backends import Backend, make_backend
from fishfarm.sandbox import (RunResult, Sandbox, SandboxConfig, SandboxLayers,
                              SandboxUnavailableError, detect_layers)
from fishfarm.task import Task
from fishfarm.types import (GenerationRequest, GenerationResult, LogprobRequest, Logprobs,
                            Message, Prompt, SampleResult, SamplingParams, Score, TaskResult)

__all__ = [
    "Backend", "GenerationRequest", "GenerationResult", "HFBackend", "LogprobRequest",
    "Logprobs", "Message", "Prompt", "RunResult", "SampleResult", "SamplingParams", "Sandbox",
    "SandboxConfig", "SandboxLayers", "SandboxUnavailableError", "Score", "Task", "TaskResult",
    "detect_layers", "make_backend",
]


def __getattr__(name: str):
    # HFBackend pulls in transformers (seconds to import); scoring-only users never pay for it.
    if name == "HFBackend":
        from fishfarm.backends.hf import HFBackend
        return HFBackend
    raise AttributeError(f"module 'fishfarm' has no attribute {name!r}")
