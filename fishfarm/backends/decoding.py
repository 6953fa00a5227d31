"""The HF backend's decoding loop: a KV cache allocated once and written in place, finished rows
dropped from the batch, and none of `generate`'s per-step machinery.

`model.generate` with its dynamic cache spends a large share of each step outside the model's
matrix products on a small model: every layer's keys and values are concatenated into a new,
longer tensor at each step (22% of a step for SmolLM2-135M at batch 16 on a 2-core CPU), and rows
that have ended keep being computed until the longest answer ends (half of the row-steps of the
tiny preset's rollouts). `LeanDecoder` runs the same model modules (norms, projections, MLPs, the
rotary embedding, the LM head: an expert written into the weights, factored SVF layers and PEFT
adapters all take effect as they do in `generate`) around its own attention over a preallocated
cache:

- the cache is one (layers, rows, kv heads, prompt + budget, head dim) tensor per keys and values,
  written in place at each step;
- when at least an eighth of the rows in the batch have ended, the batch is compacted (the live
  rows' cache columns move down in place), so ended rows cost nothing afterwards;
- a prefix every prompt of the batch shares (the system prompt and chat header) runs once;
- the LM head runs at the last position only;
- on a CPU, fp32 linear layers multiply through oneDNN (`torch.ops.mkldnn._linear_pointwise`, the
  kernel torch's compiler uses on CPUs), which runs the small-batch products of decoding faster
  than the default fp32 GEMM (on a 2-core AVX2 CPU, 1.5x for SmolLM2's MLP shapes at 16 rows and
  2.4x for its LM head). Its sums are accumulated in another order, so logits differ in the last
  bits (about 1e-4); `onednn=False` keeps torch's default product.
- with oneDNN, each `decode` call first copies the weights of the plain linear layers into
  oneDNN's blocked layout, q, k and v as one matrix and gate and up as another (a layer's three
  attention products become one, its two MLP input products one), and frees the copies when it
  returns. The copies are made from the weights as they are at the call, so an expert written
  into the weights between calls takes effect, as it does without them; they hold as much memory
  as the weights they copy. On SmolLM2-135M the copy takes about 0.15 s per call (2 cores) and
  saves 15–30% of each step's linear-layer time at 2–16 rows (`bench/generate.py` measures the
  whole effect; `pack=False` turns it off). In the fused q, k, v copy, each q and k head's two
  rotary halves are interleaved (the order of a head's features does not change its attention
  scores when q and k share it), so one complex multiplication rotates every q and k head of a
  layer instead of the model's `rotate_half` (a concatenation, a negation, four products);
- each call resolves how every layer runs once (`_Layer`: its norms, products and MLP), instead
  of checking modules at every step, and the RMSNorm of these models runs as one `F.rms_norm`
  call. With the interleaved rotary this took 5-8% off the tiny preset's rollouts (16 x 128)
  and 1-3% off an evaluation batch (64 x 48), the same answers, against the loop without both.

Greedy answers are those of `generate` up to floating-point rounding (a smaller batch can round
a matrix product differently; `bench/generate.py` counts the answers that differ). Sampling draws
from the same distributions as `generate` (HF's own temperature and top-p processors) and, for
the same seed, the same tokens: the multinomial draw is made over every row of the original batch
at every step, as `generate` makes it, so the random stream does not depend on which rows have
ended.

Llama-family models only (`SUPPORTED_MODEL_TYPES`: Llama, Mistral, Qwen2: pre-norm layers,
rotary embedding, grouped-query attention, full attention in every layer). `unsupported()` names
why another model cannot use it; `HFBackend` then falls back to `generate`.
"""
from __future__ import annotations

import functools
import sys
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from transformers.generation.logits_process import (LogitsProcessorList, TemperatureLogitsWarper,
                                                    TopPLogitsWarper)

SUPPORTED_MODEL_TYPES = ("llama", "mistral", "qwen2")
# Their RMSNorm classes: weight * x / sqrt(mean(x^2) + eps), computed in fp32.
_RMS_NORMS = ("LlamaRMSNorm", "MistralRMSNorm", "Qwen2RMSNorm")

# row index in the original batch, the row's new token ids so far -> a finish reason, or None
FinishCheck = Callable[[int, Sequence[int]], "str | None"]


def _plain(module) -> bool:
    """True for an `nn.Linear` that runs as one: no subclass (a PEFT adapter layer), no forward
    replaced on the instance (SVF's factored layers) and no hooks."""
    return type(module) is torch.nn.Linear and _unhooked(module)


def _unhooked(module) -> bool:
    """True for a module with no forward replaced on the instance and no hooks."""
    return "forward" not in module.__dict__ and not module._forward_hooks and not module._forward_pre_hooks


def onednn_available() -> bool:
    """True where torch has oneDNN's fused linear kernel for the CPU."""
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


def causal_lm_of(model):
    """Returns the HF causal LM inside `model` (itself, or the model a PEFT wrapper holds)."""
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


def unsupported(model, total_len: int) -> str | None:
    """Returns why `LeanDecoder` cannot decode `model` up to `total_len` positions, or None."""
    lm = causal_lm_of(model)
    config = lm.config
    if config.model_type not in SUPPORTED_MODEL_TYPES:
        return f"model type {config.model_type!r} (supported: {', '.join(SUPPORTED_MODEL_TYPES)})"
    body = getattr(lm, "model", None)
    if body is None or not all(hasattr(body, a) for a in ("embed_tokens", "layers", "norm", "rotary_emb")):
        return "the model has no Llama-style body (embed_tokens, layers, norm, rotary_emb)"
    devices = {str(d) for d in (getattr(lm, "hf_device_map", None) or {}).values()}
    if len(devices) > 1:
        return "the model is split across devices"
    layer_types = getattr(config, "layer_types", None)
    if layer_types and any(t != "full_attention" for t in layer_types):
        return "sliding-window attention layers"
    window = getattr(config, "sliding_window", None)
    if window and getattr(config, "use_sliding_window", True) and total_len > window:
        return f"{total_len} positions exceed the sliding window of {window}"
    if getattr(config, "final_logit_softcapping", None) or getattr(config, "attn_logit_softcapping", None):
        return "soft-capped logits"
    return None


def shared_prefix(prompts: Sequence[Sequence[int]]) -> int:
    """Returns how many leading tokens all prompts share, short of the shortest one's last token
    (each row keeps at least one token of its own for the pass that yields its first logits)."""
    limit = min(map(len, prompts)) - 1
    first = prompts[0]
    for i in range(max(limit, 0)):
        if any(p[i] != first[i] for p in prompts):
            return i
    return max(limit, 0)


def sampling_processors(temperature: float, top_p: float) -> LogitsProcessorList:
    """Returns the logits processors `generate` applies when sampling with these settings (top-k
    off), in its order."""
    processors = LogitsProcessorList()
    if temperature != 1.0:
        processors.append(TemperatureLogitsWarper(temperature))
    if top_p < 1.0:
        processors.append(TopPLogitsWarper(top_p))
    return processors


def _onednn_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """x @ weight.T + bias through oneDNN's kernel (weight dense, or in its blocked layout)."""
    out = torch.ops.mkldnn._linear_pointwise(x.reshape(-1, x.shape[-1]), weight, bias, "none", [], "")
    return out.view(*x.shape[:-1], out.shape[-1])


class _Packed:
    """Linear layers sharing an input, their weights (concatenated) copied into oneDNN's blocked
    layout: calling it on x returns each layer's output, as views of one product. `order`, when
    given, reorders the output features of the concatenation (see `_interleaved_rotary_order`)."""

    def __init__(self, modules: Sequence[torch.nn.Linear], rows: int, order: torch.Tensor | None = None):
        with torch.no_grad():
            weight = torch.cat([m.weight for m in modules]) if len(modules) > 1 else modules[0].weight
            biases = [m.bias for m in modules]
            bias = None if all(b is None for b in biases) else torch.cat(
                [b.detach() if b is not None else m.weight.new_zeros(m.out_features) for b, m in zip(biases, modules)])
            if order is not None:
                weight, bias = weight[order], (bias[order] if bias is not None else None)
            self.weight = torch.ops.mkldnn._reorder_linear_weight(weight.detach(), rows)
            self.bias = bias
        self.sizes = [m.out_features for m in modules]

    def product(self, x: torch.Tensor) -> torch.Tensor:
        """The concatenated outputs, as one tensor."""
        return _onednn_linear(x, self.weight, self.bias)

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.product(x)
        return out.split(self.sizes, dim=-1) if len(self.sizes) > 1 else (out,)


def _interleaved_rotary_order(q_heads: int, k_heads: int, v_features: int, head_dim: int) -> torch.Tensor:
    """The output order of a fused q, k, v product in which each q and k head's two rotary halves
    are interleaved (features 0, d/2, 1, d/2 + 1, ...), v unchanged. Attention scores are dot
    products over a head's features, which do not depend on their order when q and k share it;
    interleaved pairs let one complex multiplication rotate every q and k head at once."""
    half = head_dim // 2
    within = torch.stack([torch.arange(half), torch.arange(half) + half], dim=1).reshape(-1)
    heads = q_heads + k_heads
    rotated = (torch.arange(heads)[:, None] * head_dim + within).reshape(-1)
    return torch.cat([rotated, heads * head_dim + torch.arange(v_features)])


@dataclass(eq=False)
class _Layer:
    """How one decoder layer runs in a decode call: functions for its norms and products (see
    `LeanDecoder._plan`). With `qkv`, q, k and v come from one packed product, q and k interleaved
    for the rotary embedding (`_interleaved_rotary_order`); else from `q`, `k`, `v`. `mlp` runs
    an MLP as it is; else the gated MLP runs from `gate_up` (one packed product) or `gate` and
    `up`, then `act` and `down`."""
    scaling: float
    input_norm: Callable
    post_norm: Callable
    qkv: _Packed | None = None
    q: Callable | None = None
    k: Callable | None = None
    v: Callable | None = None
    o: Callable | None = None
    mlp: Callable | None = None
    gate_up: _Packed | None = None
    gate: Callable | None = None
    up: Callable | None = None
    act: Callable | None = None
    down: Callable | None = None

    @property
    def qk_width(self) -> int:
        """The features of q and k in the packed q, k, v product."""
        return self.qkv.sizes[0] + self.qkv.sizes[1]


class LeanDecoder:
    """Decodes left-padded batches of prompt token ids with a Llama-family HF model.

    Args:
        model: the causal LM (or a PEFT model around one); its modules are called at each step,
            so its current weights are always used.
        compact_fraction: drop ended rows from the batch once they are at least this share of it.
        min_shared_prefix: when all prompts of a batch start with the same tokens (a system
            prompt, a chat header), at least this many, that prefix runs once for the batch.
        onednn: multiply plain fp32 linear layers on a CPU with oneDNN's kernel (where torch has
            it); False: torch's default product everywhere.
        pack: with oneDNN, copy the plain linear layers' weights into its blocked layout at the
            start of each `decode` call, fusing q, k, v and gate, up (see the module docstring).
    """

    def __init__(self, model, *, compact_fraction: float = 0.125, min_shared_prefix: int = 8,
                 onednn: bool = True, pack: bool = True):
        self.lm = causal_lm_of(model)
        self.body = self.lm.model
        self.layers = list(self.body.layers)
        attn = self.layers[0].self_attn
        self.head_dim = attn.head_dim
        self.kv_heads = self.lm.config.num_key_value_heads
        # The model's own rotary function (Llama, Mistral and Qwen2 share its definition).
        self.apply_rotary = sys.modules[type(attn).__module__].apply_rotary_pos_emb
        self.compact_fraction = compact_fraction
        self.min_shared_prefix = min_shared_prefix
        self.onednn = (onednn and onednn_available() and self.device.type == "cpu"
                       and self.dtype == torch.float32)
        self.pack = pack and self.onednn
        # How each layer, the final norm and the head run, during a decode call (see `_plan`).
        self._layers: list[_Layer] | None = None
        self._final_norm = self._head = None

    @property
    def device(self) -> torch.device:
        return self.body.embed_tokens.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.body.embed_tokens.weight.dtype

    def _forward(self, ids: torch.Tensor, positions: torch.Tensor, keys: torch.Tensor,
                 values: torch.Tensor, col: int, mask: torch.Tensor, *, head: bool = True) -> torch.Tensor | None:
        """Runs `ids` (rows x t) at cache columns col..col+t-1 through the call's plan (`_plan`);
        returns the last position's logits in fp32 (None when not `head`). `mask`
        (rows x 1 x t x col+t, True = attend) covers the cache up to col+t."""
        rows, t = ids.shape
        d = self.head_dim
        x = self.body.embed_tokens(ids)
        cos, sin = self.body.rotary_emb(x, positions)
        rotation = None  # cos + i sin per position and pair, for the interleaved q, k of packed layers
        # One additive mask for every layer (attention turns a boolean one into this at each call).
        bias = torch.zeros(mask.shape, dtype=x.dtype, device=x.device).masked_fill_(~mask, float("-inf"))
        end = col + t
        for i, layer in enumerate(self._layers):
            h = layer.input_norm(x)
            if layer.qkv is not None:
                if rotation is None:
                    rotation = torch.complex(cos[..., :d // 2], sin[..., :d // 2]).unsqueeze(2)
                out = layer.qkv.product(h)
                width = layer.qk_width
                pairs = torch.view_as_complex(out[..., :width].unflatten(-1, (-1, d // 2, 2)))
                qk = torch.view_as_real(pairs * rotation).flatten(-2).transpose(1, 2)  # rows, heads, t, d
                q, k = qk[:, :-self.kv_heads], qk[:, -self.kv_heads:]
                v = out[..., width:].unflatten(-1, (self.kv_heads, d)).transpose(1, 2)
            else:
                q, k, v = (f(h).view(rows, t, -1, d).transpose(1, 2) for f in (layer.q, layer.k, layer.v))
                q, k = self.apply_rotary(q, k, cos, sin)
            keys[i, :, :, col:end] = k
            values[i, :, :, col:end] = v
            out = F.scaled_dot_product_attention(q, keys[i, :, :, :end], values[i, :, :, :end], attn_mask=bias,
                                                 scale=layer.scaling, enable_gqa=True)
            x = x + layer.o(out.transpose(1, 2).reshape(rows, t, -1))
            h = layer.post_norm(x)
            if layer.mlp is not None:
                x = x + layer.mlp(h)
                continue
            # The gated MLP of these models: down(act(gate(h)) * up(h)).
            gate, up = layer.gate_up(h) if layer.gate_up is not None else (layer.gate(h), layer.up(h))
            x = x + layer.down(layer.act(gate).mul_(up))
        if not head:
            return None
        return self._head(self._final_norm(x[:, -1])).float()

    def _norm(self, module):
        """A function computing `module(x)`: the RMSNorm of these models as one `F.rms_norm` call
        (the same formula in fewer ops) in fp32 when it is unhooked and has its own forward."""
        if (type(module).__name__ in _RMS_NORMS and self.dtype == torch.float32 and _unhooked(module)):
            return functools.partial(F.rms_norm, normalized_shape=tuple(module.weight.shape), weight=module.weight,
                                     eps=module.variance_epsilon)
        return module

    def _linear(self, module, rows: int | None = None):
        """A function computing `module(x)` for a plain linear layer: with `rows` and `pack`, the
        product of its packed copy (tuned for `rows`); else oneDNN's kernel when `onednn` is on;
        for any other module, the module."""
        if rows is not None and self.pack and _plain(module):
            return _Packed((module,), rows).product
        if self.onednn and _plain(module):
            return functools.partial(_onednn_linear, weight=module.weight, bias=module.bias)
        return module

    @staticmethod
    def _gated(mlp) -> bool:
        """True for the gated MLP of these models, unhooked and with its own forward."""
        return all(hasattr(mlp, a) for a in ("gate_proj", "up_proj", "down_proj", "act_fn")) and _unhooked(mlp)

    def _plan(self, rows: int) -> None:
        """Resolves how each layer runs in this call (`_Layer`), the head and final norm likewise.
        With `pack`, copies the plain linear layers' current weights into oneDNN's blocked layout
        (q, k, v fused when all three are plain, gate and up likewise); `rows` is the batch size
        the layout is tuned for. Layers that are not plain (PEFT adapters, factored SVF layers,
        hooks) keep running as modules."""
        layers = []
        for layer in self.layers:
            attn = layer.self_attn
            plan = _Layer(attn.scaling, self._norm(layer.input_layernorm), self._norm(layer.post_attention_layernorm))
            if self.pack and all(_plain(m) for m in (attn.q_proj, attn.k_proj, attn.v_proj)):
                order = _interleaved_rotary_order(attn.q_proj.out_features // self.head_dim, self.kv_heads,
                                                  attn.v_proj.out_features, self.head_dim)
                plan.qkv = _Packed((attn.q_proj, attn.k_proj, attn.v_proj), rows, order)
            else:
                plan.q, plan.k, plan.v = (self._linear(m) for m in (attn.q_proj, attn.k_proj, attn.v_proj))
            plan.o = self._linear(attn.o_proj, rows)
            mlp = layer.mlp
            if not (self.onednn and self._gated(mlp)):
                plan.mlp = mlp  # runs as it is
            else:
                plan.act = mlp.act_fn
                if self.pack and _plain(mlp.gate_proj) and _plain(mlp.up_proj):
                    plan.gate_up = _Packed((mlp.gate_proj, mlp.up_proj), rows)
                else:
                    plan.gate, plan.up = self._linear(mlp.gate_proj), self._linear(mlp.up_proj)
                plan.down = self._linear(mlp.down_proj, rows)
            layers.append(plan)
        head = self.lm.get_output_embeddings()
        self._head = self._linear(head, rows)
        self._final_norm = self._norm(self.body.norm)
        self._layers = layers

    @staticmethod
    def _kept(cache: torch.Tensor, keep: Sequence[int], used: int) -> torch.Tensor:
        """Returns the cache of the rows in `keep` (ascending): each row's `used` columns written
        so far move down to its new place in the same buffer, and the view of the first
        len(keep) rows is returned. A row only moves to a place at or before its own, so no row
        is overwritten before it moves; nothing is allocated (for SmolLM2-135M's cache of 64 rows,
        keeping 56 rows' first 80 columns took 11 ms on a 2-core CPU, a gather into a new cache
        106 ms)."""
        for new, old in enumerate(keep):
            if new != old:
                cache[:, new, :, :used] = cache[:, old, :, :used]
        return cache[:, :len(keep)]

    @torch.no_grad()
    def decode(self, prompts: Sequence[Sequence[int]], *, max_new_tokens: int, pad_id: int,
               finished: FinishCheck, temperature: float = 0.0, top_p: float = 1.0) -> list[list[int]]:
        """Returns each row's new token ids, up to and including the token at which `finished`
        first returned a reason (or `max_new_tokens` of them).

        Args:
            prompts: token ids per row (not padded).
            max_new_tokens: the budget per row.
            pad_id: the id put in front of shorter prompts (never attended to).
            finished: called with (row, the row's new ids) after each new token.
            temperature: 0 for greedy decoding, else sampling with `top_p` from the torch global
                random stream (seed it before the call).
        """
        self._plan(len(prompts))
        try:
            return self._decode(prompts, max_new_tokens=max_new_tokens, pad_id=pad_id, finished=finished,
                                temperature=temperature, top_p=top_p)
        finally:
            self._layers = self._head = self._final_norm = None

    def _decode(self, prompts, *, max_new_tokens, pad_id, finished, temperature, top_p) -> list[list[int]]:
        n, device = len(prompts), self.device
        width = max(map(len, prompts))
        total = width + max_new_tokens
        shared = shared_prefix(prompts) if n > 1 and self.min_shared_prefix else 0
        shared = shared if shared >= self.min_shared_prefix else 0
        ids = torch.full((n, width), pad_id, dtype=torch.long)
        valid = torch.zeros((n, total), dtype=torch.bool)
        # Columns: the prefix all prompts share, then each prompt's rest left-padded, so every
        # answer starts at column `width`. Positions count valid columns only.
        for row, p in enumerate(prompts):
            ids[row, :shared] = torch.tensor(list(p[:shared]), dtype=torch.long)
            ids[row, width - len(p) + shared:] = torch.tensor(list(p[shared:]), dtype=torch.long)
            valid[row, :shared] = True
            valid[row, width - len(p) + shared:width] = True
        positions = (valid[:, :width].long().cumsum(-1) - 1).clamp(min=0)
        ids, valid, positions = ids.to(device), valid.to(device), positions.to(device)
        shape = (len(self.layers), n, self.kv_heads, total, self.head_dim)
        keys = torch.empty(shape, dtype=self.dtype, device=device)
        values = torch.empty(shape, dtype=self.dtype, device=device)

        # Prompt passes: the shared prefix once (its keys and values copied to every row), then the
        # rest, causal over valid keys; a padding query attends to itself only, which keeps its
        # (unused) output finite.
        causal = torch.ones(width, width, dtype=torch.bool, device=device).tril()
        mask = (causal & valid[:, None, None, :width]) | torch.eye(width, dtype=torch.bool, device=device)
        if shared:
            self._forward(ids[:1, :shared], positions[:1, :shared], keys[:, :1], values[:, :1], 0,
                          mask[:1, :, :shared, :shared], head=False)
            keys[:, 1:, :, :shared] = keys[:, :1, :, :shared]
            values[:, 1:, :, :shared] = values[:, :1, :, :shared]
        logits = self._forward(ids[:, shared:], positions[:, shared:], keys, values, shared, mask[:, :, shared:])

        processors = sampling_processors(temperature, top_p) if temperature > 0 else None
        full_probs = torch.ones((n, logits.shape[-1]), device=device) if processors is not None else None
        rows = torch.arange(n, device=device)  # original row of each row in the batch
        live = list(range(n))                  # the same, on the host
        out: list[list[int]] = [[] for _ in range(n)]
        done = [False] * n
        next_pos = positions[:, -1] + 1
        for step in range(max_new_tokens):
            if processors is None:
                tokens = logits.argmax(dim=-1)
            else:
                # One draw over every original row, as `generate` makes it: the same random
                # stream whichever rows have ended.
                scores = processors(None, logits)
                full_probs[rows] = torch.softmax(scores, dim=-1)
                tokens = torch.multinomial(full_probs, num_samples=1)[:, 0][rows]
            for j, token in enumerate(tokens.tolist()):
                row = live[j]
                if done[row]:
                    continue
                out[row].append(token)
                done[row] = finished(row, out[row]) is not None
            ended = sum(done[r] for r in live)
            if ended == len(live) or step == max_new_tokens - 1:
                break
            if ended and ended >= self.compact_fraction * len(live):
                keep = [j for j, r in enumerate(live) if not done[r]]
                index = torch.tensor(keep, device=device)
                keys, values = self._kept(keys, keep, width + step), self._kept(values, keep, width + step)
                valid, next_pos, tokens = valid[index], next_pos[index], tokens[index]
                rows, live = rows[index], [live[j] for j in keep]
            col = width + step
            valid[:, col] = True
            logits = self._forward(tokens[:, None], next_pos[:, None], keys, values, col,
                                   valid[:, None, None, :col + 1])
            next_pos = next_pos + 1
        return out
