"""The HF backend's lean decoding loop: `LeanDecoder` decodes a batch of prompts with the model's
own modules around its own attention over a KV cache allocated once and written in place, in a
few named steps:

    plan = self.plan(len(prompts))               # how each layer runs in this call
    layout = self._layout(prompts, ...)          # a shared prefix, then each prompt left-padded
    logits = self._prefill(plan, layout, cache)  # the shared prefix once, then every prompt's rest
    self._decode_n_tokens(...), at each step:
        tokens = next_tokens(logits, rows.index)     # greedy, or one draw over the whole batch
        rows.record(tokens)                          # each row's answer; which rows have ended
        tokens = self._compact(cache, rows, tokens)  # ended rows leave the batch (`KVCache.keep`)
        logits = self._decode_one_token(plan, cache, rows, tokens)

The plan (`decoding_plan.DecodePlan`) is made from the weights at the call and passed to every
forward pass (`_forward`); it lives as long as the call.

- the cache (`KVCache`) holds every layer's keys and values for prompt + budget columns;
- once at least an eighth of the rows in the batch have ended, the batch is compacted (the live
  rows' cache columns move down in place), so ended rows cost nothing afterwards;
- a prefix every prompt shares (a system prompt, a chat header), of at least
  `min_shared_prefix` tokens, runs once for the batch;
- the LM head runs at the last position only;
- each call resolves how every layer runs once (`decoding_plan`: RMSNorm as one call; on a CPU
  in fp32, oneDNN's kernel and weights packed for the call, q, k, v fused, rotary halves
  interleaved).

Greedy answers are those of `generate` up to floating-point rounding (oneDNN's products and a
smaller batch round differently; `bench/generate.py` counts the answers that differ). Sampling
draws from the same distributions as `generate` (HF's own temperature and top-p processors) and,
for the same seed, the same tokens: the multinomial draw is made over every row of the original
batch at every step, as `generate` makes it, so the random stream does not depend on which rows
have ended.

It runs the families of `fishfarm.backends.families` marked `lean_decoding` (pre-norm layers,
rotary embedding, grouped-query attention, full attention in every layer). `unsupported()` names
why another model cannot use it; `HFBackend` then falls back to `generate`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from transformers.generation.logits_process import (LogitsProcessorList, TemperatureLogitsWarper,
                                                    TopPLogitsWarper)

from fishfarm.backends.batching import pad_batch, shared_prefix
from fishfarm.backends.decoding_plan import DecodePlan, Rotary, plan_decoding
from fishfarm.backends.families import MODEL_FAMILIES
from fishfarm.backends.kv_cache import KVCache
from fishfarm.backends.onednn import onednn_available

# row index in the original batch, the row's new token ids so far -> a finish reason, or None
FinishCheck = Callable[[int, Sequence[int]], "str | None"]


def causal_lm_of(model):
    """Returns the HF causal LM inside `model` (itself, or the model a PEFT wrapper holds)."""
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


def unsupported(model, total_len: int) -> str | None:
    """Returns why `LeanDecoder` cannot decode `model` up to `total_len` positions, or None."""
    lm = causal_lm_of(model)
    config = lm.config
    family = MODEL_FAMILIES.get(config.model_type)
    if family is None or not family.lean_decoding:
        lean = [t for t, f in MODEL_FAMILIES.items() if f.lean_decoding]
        return f"model type {config.model_type!r} (supported: {', '.join(lean)})"
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


def sampling_processors(temperature: float, top_p: float) -> LogitsProcessorList:
    """Returns the logits processors `generate` applies when sampling with these settings (top-k
    off), in its order."""
    processors = LogitsProcessorList()
    if temperature != 1.0:
        processors.append(TemperatureLogitsWarper(temperature))
    if top_p < 1.0:
        processors.append(TopPLogitsWarper(top_p))
    return processors


class NextTokens:
    """Picks the next token of each row in the batch from its logits: the argmax at temperature
    0; else a draw from the distribution of HF's temperature and top-p processors, made over every
    row of the original batch (`batch` rows; an ended row keeps its last distribution), as
    `generate` makes it, so the random stream does not depend on which rows have ended."""

    def __init__(self, batch: int, *, temperature: float, top_p: float):
        self.batch = batch
        self.processors = sampling_processors(temperature, top_p) if temperature > 0 else None
        self.probs: torch.Tensor | None = None  # batch x vocab

    def __call__(self, logits: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """`index`: the original row of each row in the batch."""
        if self.processors is None:
            return logits.argmax(dim=-1)
        if self.probs is None:
            self.probs = torch.ones((self.batch, logits.shape[-1]), device=logits.device)
        self.probs[index] = torch.softmax(self.processors(None, logits), dim=-1)
        return torch.multinomial(self.probs, num_samples=1)[:, 0][index]


@dataclass(frozen=True)
class Layout:
    """A batch's prompt columns: `shared` columns of a prefix all prompts share, then each
    prompt's rest left-padded, so every answer starts at column `width`. `ids` and `positions`
    (counting real tokens only) are rows x width; `valid` (True = a real token, attended to) is
    rows x (width + budget)."""
    ids: torch.Tensor
    positions: torch.Tensor
    valid: torch.Tensor
    shared: int
    width: int


class Rows:
    """The rows in the batch while it decodes: the original row of each (`index` on the device,
    `live` on the host), their attention masks over the cache (`valid`) and next positions, and
    every original row's answer so far and whether it has ended (`finished` said so)."""

    def __init__(self, layout: Layout, finished: FinishCheck):
        n = layout.ids.shape[0]
        self.index = torch.arange(n, device=layout.ids.device)
        self.live = list(range(n))
        self.valid, self.next_pos = layout.valid, layout.positions[:, -1] + 1
        self.finished = finished
        self.out: list[list[int]] = [[] for _ in range(n)]
        self.done = [False] * n

    def record(self, tokens: Sequence[int]) -> int:
        """Appends each running row's new token to its answer; returns how many rows in the batch
        have ended."""
        for row, token in zip(self.live, tokens):
            if not self.done[row]:
                self.out[row].append(token)
                self.done[row] = self.finished(row, self.out[row]) is not None
        return sum(self.done[r] for r in self.live)

    def keep(self, keep: Sequence[int], index: torch.Tensor) -> None:
        """Keeps the rows at `keep` (batch positions, ascending; `index`: the same on the device)."""
        self.valid, self.next_pos, self.index = self.valid[index], self.next_pos[index], self.index[index]
        self.live = [self.live[j] for j in keep]


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
            start of each `decode` call, fusing q, k, v and gate, up (`decoding_plan`).
    """

    def __init__(self, model, *, compact_fraction: float = 0.125, min_shared_prefix: int = 8,
                 onednn: bool = True, pack: bool = True):
        self.lm = causal_lm_of(model)
        self.body = self.lm.model
        self.compact_fraction = compact_fraction
        self.min_shared_prefix = min_shared_prefix
        self.onednn = (onednn and onednn_available() and self.device.type == "cpu"
                       and self.dtype == torch.float32)
        self.pack = pack and self.onednn

    @property
    def device(self) -> torch.device:
        return self.body.embed_tokens.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.body.embed_tokens.weight.dtype

    def plan(self, rows: int) -> DecodePlan:
        """Returns how the model runs in a call of `rows` rows, from its weights as they are now."""
        return plan_decoding(self.lm, rows=rows, onednn=self.onednn, pack=self.pack)

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
        plan = self.plan(len(prompts))
        layout = self._layout(prompts, pad_id=pad_id, max_new_tokens=max_new_tokens)
        cache = self._cache(len(prompts), layout.width + max_new_tokens)
        logits = self._prefill(plan, layout, cache)
        next_tokens = NextTokens(len(prompts), temperature=temperature, top_p=top_p)
        return self._decode_n_tokens(plan, cache, Rows(layout, finished), logits, next_tokens, max_new_tokens)

    def _cache(self, rows: int, columns: int) -> KVCache:
        config = self.lm.config
        return KVCache(layers=len(self.body.layers), rows=rows, kv_heads=config.num_key_value_heads,
                       columns=columns, head_dim=self.body.layers[0].self_attn.head_dim, dtype=self.dtype,
                       device=self.device)

    def _layout(self, prompts: Sequence[Sequence[int]], *, pad_id: int, max_new_tokens: int) -> Layout:
        """Places the prompts in columns (`Layout`), on the model's device."""
        n, shared = len(prompts), shared_prefix(prompts, self.min_shared_prefix)
        width = max(map(len, prompts))
        rest, mask = pad_batch([p[shared:] for p in prompts], pad_id, left=True, width=width - shared)
        prefix = torch.tensor(list(prompts[0][:shared]), dtype=torch.long).expand(n, shared)
        valid = torch.cat([torch.ones((n, shared), dtype=torch.bool), mask.bool(),
                           torch.zeros((n, max_new_tokens), dtype=torch.bool)], dim=1)
        positions = (valid[:, :width].long().cumsum(-1) - 1).clamp(min=0)
        device = self.device
        return Layout(torch.cat([prefix, rest], dim=1).to(device), positions.to(device), valid.to(device),
                      shared, width)

    def _prefill(self, plan: DecodePlan, layout: Layout, cache: KVCache) -> torch.Tensor:
        """Runs the prompts: the shared prefix once (one row, then its keys and values are written
        into every row), then every row's rest, causal over real tokens; a padding query attends
        to itself only, which keeps its (unused) output finite. Returns the last position's
        logits."""
        width, shared, device = layout.width, layout.shared, self.device
        causal = torch.ones(width, width, dtype=torch.bool, device=device).tril()
        mask = (causal & layout.valid[:, None, None, :width]) | torch.eye(width, dtype=torch.bool, device=device)
        if shared:
            prefix = self._cache(1, shared)
            self._forward(plan, layout.ids[:1, :shared], layout.positions[:1, :shared], prefix,
                          mask[:1, :, :shared, :shared], head=False)
            cache.write_prefix(prefix)
        return self._forward(plan, layout.ids[:, shared:], layout.positions[:, shared:], cache, mask[:, :, shared:])

    def _decode_n_tokens(self, plan: DecodePlan, cache: KVCache, rows: Rows, logits: torch.Tensor,
                         next_tokens: NextTokens, max_new_tokens: int) -> list[list[int]]:
        """Takes a token per row and step until every row has ended or the budget is spent;
        returns the answers."""
        for step in range(max_new_tokens):
            tokens = next_tokens(logits, rows.index)
            ended = rows.record(tokens.tolist())
            if ended == len(rows.live) or step == max_new_tokens - 1:
                break
            if ended and ended >= self.compact_fraction * len(rows.live):
                tokens = self._compact(cache, rows, tokens)
            logits = self._decode_one_token(plan, cache, rows, tokens)
        return rows.out

    @staticmethod
    def _compact(cache: KVCache, rows: Rows, tokens: torch.Tensor) -> torch.Tensor:
        """Drops the ended rows from the batch (their cache, masks, positions); returns the
        running rows' tokens."""
        keep = [j for j, row in enumerate(rows.live) if not rows.done[row]]
        index = torch.tensor(keep, device=tokens.device)
        cache.keep(keep)
        rows.keep(keep, index)
        return tokens[index]

    def _decode_one_token(self, plan: DecodePlan, cache: KVCache, rows: Rows, tokens: torch.Tensor) -> torch.Tensor:
        """Runs each row's newest token; returns the logits of the token after it."""
        col = cache.length
        rows.valid[:, col] = True
        mask = rows.valid[:, None, None, :col + 1]
        logits = self._forward(plan, tokens[:, None], rows.next_pos[:, None], cache, mask)
        rows.next_pos = rows.next_pos + 1
        return logits

    def _forward(self, plan: DecodePlan, ids: torch.Tensor, positions: torch.Tensor, cache: KVCache,
                 mask: torch.Tensor, *, head: bool = True) -> torch.Tensor | None:
        """Runs `ids` (rows x t) at `positions` through the model as `plan` says, their keys and
        values written to `cache` after its written columns; returns the last position's logits
        in fp32 (None when not `head`). `mask` (rows x 1 x t x columns, True = attend) covers the
        cache up to the new columns."""
        x = self.body.embed_tokens(ids)
        rotary = Rotary(*self.body.rotary_emb(x, positions))
        # One additive mask for every layer (attention turns a boolean one into this at each call).
        bias = torch.zeros(mask.shape, dtype=x.dtype, device=x.device).masked_fill_(~mask, float("-inf"))
        start = cache.length
        for i, layer in enumerate(plan.layers):
            q, k, v = layer.attention_input(x, rotary)
            cache.write(i, k, v, start)
            keys, values = cache.view(i)
            out = F.scaled_dot_product_attention(q, keys, values, attn_mask=bias, scale=layer.scaling, enable_gqa=True)
            x = x + layer.attention_output(out.transpose(1, 2).flatten(2))
            x = x + layer.mlp(x)
        return plan.head(x[:, -1]).float() if head else None
