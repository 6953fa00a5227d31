"""The reference backend: batched generation and log-probabilities with HF transformers.

`HFBackend` keeps a reference to the live model and never copies its weights, so an expert
applied to the model in place (t2lib) changes the next answers with no reload: its
`sync_weights` has nothing to do.
"""
from __future__ import annotations

import contextlib
from collections import defaultdict
from typing import Mapping, Sequence

import torch
from tqdm.auto import tqdm
from transformers import GenerationConfig, PreTrainedModel, StoppingCriteria, StoppingCriteriaList

from fishfarm.backends.batching import pad_batch, shared_prefix
from fishfarm.backends.decoding import LeanDecoder, unsupported as decoding_support
from fishfarm.types import (FinishReason, GenerationRequest, GenerationResult, LogprobRequest,
                            Logprobs, Prompt, SamplingParams)


DECODINGS = ("auto", "lean", "generate")


class _FinishTracker(StoppingCriteria):
    """Records when each row ends (EOS or a stop string), so padding is never taken for output.

    Padding and a genuinely generated pad token look the same in the output tensor; the step at
    which a row finished is the only reliable way to know where its answer ends.
    """

    def __init__(self, tokenizer, *, stop: tuple[str, ...], eos_ids: set[int], batch: int,
                 prompt_len: int):
        self.tokenizer, self.stop, self.eos_ids = tokenizer, stop, eos_ids
        self.prompt_len = prompt_len
        # A stop string of n characters spans at most n tokens, plus a few that decode to "".
        self.window = max((len(s) for s in stop), default=0) + 4
        self.end: list[int | None] = [None] * batch
        self.reason: list[FinishReason] = ["length"] * batch

    def observe(self, row: int, new_ids: Sequence[int]) -> FinishReason | None:
        """Checks a row's newest token (EOS, or a stop string in the last tokens); returns why
        the row has ended, or None while it runs."""
        if self.end[row] is None:
            if int(new_ids[-1]) in self.eos_ids:
                self.end[row], self.reason[row] = len(new_ids), "eos"
            elif self.stop:
                tail = self.tokenizer.decode(new_ids[-self.window:], skip_special_tokens=False)
                if any(s in tail for s in self.stop):
                    self.end[row], self.reason[row] = len(new_ids), "stop"
        return None if self.end[row] is None else self.reason[row]

    def __call__(self, input_ids: torch.LongTensor, scores, **kwargs) -> torch.BoolTensor:
        new = input_ids[:, self.prompt_len:]
        done = [self.observe(row, new[row]) is not None for row in range(new.shape[0])]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


def cut_at_stop(text: str, stop: tuple[str, ...]) -> tuple[str, bool]:
    """Returns (text before the first stop string, whether one was found)."""
    cuts = [i for i in (text.find(s) for s in stop) if i >= 0]
    return (text[:min(cuts)], True) if cuts else (text, False)


class HFBackend:
    """Generates and scores with a live HF causal LM (the `fishfarm.backends.Backend` protocol).

    Args:
        model: a causal LM; kept by reference (its current weights are always used).
        tokenizer: its tokenizer; its chat template renders chat prompts unless a prompt brings
            its own.
        batch_size: prompts per generation batch.
        logprob_batch_size: sequences per forward pass in `logprobs` without gradients
            (default: `batch_size`).
        max_batch_tokens: cap on a generation batch's padded prompt tokens (count x longest
            prompt); long prompts then go in smaller batches. None: `batch_size` alone decides.
            On a 2-core CPU, 64 short prompts per batch run 22% faster than 24, while 350-token
            prompts run faster in batches of ~16.
        progress: show a tqdm progress bar during generation by default.
        min_shared_prefix: in `logprobs` and `next_token_logprobs`, when every sequence of a
            batch starts with the same tokens (a system prompt, a chat header), and at least this
            many, the prefix runs once and its keys and values are shared by the batch (and so is
            its gradient); 0 turns this off. Results are the same up to floating-point rounding.
        decoding: how answers are generated. "lean" (`fishfarm.backends.decoding.LeanDecoder`: a
            KV cache allocated once and written in place, ended rows dropped from the batch; the
            families marked `lean_decoding` in `fishfarm.backends.families`: Llama, Mistral,
            Qwen2), "generate" (`model.generate` with its dynamic cache, the reference path), or
            "auto" (default): lean where the model supports it, else generate. Both give the same
            answers up to floating-point rounding, and the same samples for the same seed.
    """

    def __init__(self, model: PreTrainedModel, tokenizer, *, batch_size: int = 16,
                 logprob_batch_size: int | None = None, max_batch_tokens: int | None = None,
                 progress: bool = True, min_shared_prefix: int = 8, decoding: str = "auto"):
        if tokenizer.pad_token_id is None and tokenizer.eos_token_id is None:
            raise ValueError("the tokenizer has neither a pad nor an EOS token; set "
                             "tokenizer.pad_token before building HFBackend")
        if decoding not in DECODINGS:
            raise ValueError(f"decoding={decoding!r}: choose one of {', '.join(DECODINGS)}")
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.logprob_batch_size = logprob_batch_size or batch_size
        self.max_batch_tokens = max_batch_tokens
        self.progress = progress
        self.min_shared_prefix = min_shared_prefix
        self.decoding = decoding
        self._lean: LeanDecoder | None = None
        if decoding == "lean":
            self._lean_decoder(1)  # a model it cannot run is named now, not at the first batch

    name = "hf"
    shares_weights = True  # the model's own tensors: an expert written into them is seen at once

    @classmethod
    def available(cls) -> str | None:
        """Returns None: HF transformers runs wherever the kit does (CPU or GPU)."""
        return None

    def sync_weights(self, weights: Mapping[str, torch.Tensor]) -> None:
        """Does nothing: the backend reads the live tensors that were just written."""

    @property
    def device(self) -> torch.device:
        """Returns the device of the model's first parameter (where inputs are sent)."""
        return next(self.model.parameters()).device

    @property
    def pad_id(self) -> int:
        """Returns the id used for padding (the EOS id when the tokenizer has no pad token)."""
        tok = self.tokenizer
        return tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id

    @property
    def eos_ids(self) -> set[int]:
        """Returns every token id that ends an answer (tokenizer's and model's EOS)."""
        ids = {self.tokenizer.eos_token_id}
        model_eos = getattr(self.model.generation_config, "eos_token_id", None)
        ids.update(model_eos if isinstance(model_eos, (list, tuple)) else [model_eos])
        return {i for i in ids if i is not None}

    def render(self, prompt: Prompt) -> str:
        """Returns the prompt as the text the model reads (chat template applied)."""
        if prompt.text is not None:
            return prompt.text
        template = prompt.chat_template or self.tokenizer.chat_template
        if template is None:
            raise ValueError("the tokenizer has no chat template; pass Prompt(..., "
                             "chat_template=...) or use Prompt.raw(text)")
        turns = [{"role": m.role, "content": m.content} for m in prompt.messages]
        prefill = prompt.continues_response
        return self.tokenizer.apply_chat_template(
            turns, chat_template=template, tokenize=False, add_generation_prompt=not prefill,
            continue_final_message=prefill)

    def encode(self, prompt: Prompt) -> list[int]:
        """Returns the prompt's token ids (raw text gets the tokenizer's special tokens, chat
        text does not: the template already wrote them)."""
        ids = self.tokenizer(self.render(prompt), add_special_tokens=prompt.text is not None,
                             return_attention_mask=False)["input_ids"]
        if not ids:
            raise ValueError("the prompt is empty after tokenization; log-probs and generation "
                             "need at least one token of context")
        return ids

    def generate(self, requests: Sequence[GenerationRequest], *,
                 progress: bool | None = None) -> list[GenerationResult]:
        """Returns one answer per request, in order, decoded from left-padded batches."""
        groups: dict[SamplingParams, list[int]] = defaultdict(list)
        for i, req in enumerate(requests):
            groups[req.sampling].append(i)
        encoded = [self.encode(req.prompt) for req in requests]
        results: list[GenerationResult | None] = [None] * len(requests)
        show = self.progress if progress is None else progress
        with tqdm(total=len(requests), desc="generate", unit="answer", disable=not show) as bar:
            for sampling, idx in groups.items():
                idx.sort(key=lambda i: -len(encoded[i]))  # longest first: OOM shows up at once
                for b, batch in enumerate(self._batches(idx, encoded)):
                    outs = self._generate_batch([encoded[i] for i in batch], sampling,
                                                batch_index=b)
                    for i, out in zip(batch, outs):
                        results[i] = out
                    bar.update(len(batch))
        return results  # type: ignore[return-value]

    def _batches(self, idx: list[int], encoded: list[list[int]]) -> list[list[int]]:
        """Cuts indices sorted longest first into batches of at most `batch_size` prompts and
        `max_batch_tokens` padded tokens (a batch's first prompt is its longest)."""
        batches: list[list[int]] = []
        for i in idx:
            if batches:
                last = batches[-1]
                fits = len(last) < self.batch_size and (
                    self.max_batch_tokens is None
                    or (len(last) + 1) * len(encoded[last[0]]) <= self.max_batch_tokens)
                if fits:
                    last.append(i)
                    continue
            batches.append([i])
        return batches

    def _generate_batch(self, prompts: list[list[int]], sampling: SamplingParams, *,
                        batch_index: int) -> list[GenerationResult]:
        width = max(map(len, prompts))
        sample = sampling.temperature > 0
        tracker = _FinishTracker(self.tokenizer, stop=sampling.stop, eos_ids=self.eos_ids,
                                 batch=len(prompts), prompt_len=width)
        seeded = sample and sampling.seed is not None
        # A seeded call leaves the global RNG as it found it.
        rng = (torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else [])
               if seeded else contextlib.nullcontext())
        lean = self._lean_decoder(width + sampling.max_new_tokens)
        with torch.no_grad(), rng:
            if seeded:
                torch.manual_seed(sampling.seed + batch_index)
            if lean is not None:
                new = lean.decode(prompts, max_new_tokens=sampling.max_new_tokens, pad_id=self.pad_id,
                                  finished=tracker.observe, temperature=sampling.temperature,
                                  top_p=sampling.top_p)
            else:
                new = self._hf_generate(prompts, sampling, tracker)
        results = []
        for row in range(len(prompts)):
            end = tracker.end[row] if tracker.end[row] is not None else len(new[row])
            ids = new[row][:end]
            text = self.tokenizer.decode(ids, skip_special_tokens=True)
            text, cut = cut_at_stop(text, sampling.stop)
            reason = "stop" if cut else tracker.reason[row]
            results.append(GenerationResult(text=text, token_ids=tuple(ids),
                                            finish_reason=reason, prompt_tokens=len(prompts[row])))
        return results

    def _hf_generate(self, prompts: list[list[int]], sampling: SamplingParams,
                     tracker: _FinishTracker) -> list[list[int]]:
        """Returns each row's new token ids from one left-padded batch through `model.generate`."""
        input_ids, mask = pad_batch(prompts, self.pad_id, left=True)  # every answer starts at column width
        width = input_ids.shape[1]
        sample = sampling.temperature > 0
        # Every field is set, so nothing leaks in from the model's own generation_config
        # (top_k 0 = off when sampling; 50 is the value greedy validation expects).
        config = GenerationConfig(
            max_new_tokens=sampling.max_new_tokens, do_sample=sample, num_beams=1,
            temperature=sampling.temperature if sample else 1.0,
            top_p=sampling.top_p if sample else 1.0, top_k=0 if sample else 50, typical_p=1.0,
            repetition_penalty=1.0, no_repeat_ngram_size=0, num_return_sequences=1,
            eos_token_id=sorted(self.eos_ids), pad_token_id=self.pad_id)
        out = self.model.generate(input_ids=input_ids.to(self.device), attention_mask=mask.to(self.device),
                                  generation_config=config, stopping_criteria=StoppingCriteriaList([tracker]))
        return out[:, width:].cpu().tolist()

    def _lean_decoder(self, total_len: int) -> LeanDecoder | None:
        """Returns the lean decoder when `decoding` allows it and the model supports it for
        `total_len` positions (prompt + budget), else None (`generate` runs)."""
        if self.decoding == "generate":
            return None
        reason = decoding_support(self.model, total_len)
        if reason is not None:
            if self.decoding == "lean":
                raise ValueError(f"decoding='lean' cannot run this model here ({reason}); use "
                                 "decoding='generate' or 'auto'")
            return None
        if self._lean is None:
            self._lean = LeanDecoder(self.model, min_shared_prefix=self.min_shared_prefix)
        return self._lean

    def logprobs(self, requests: Sequence[LogprobRequest], *, grad: bool = False,
                 distributions: bool = False) -> Logprobs:
        """Returns the log-probability of each continuation given its prompt.

        Only continuation positions go through the LM head: the model body runs on the whole
        right-padded sequence, then the hidden states just before each continuation token are
        gathered and projected, which saves a (batch x length x vocab) logits tensor.

        Args:
            requests: prompt + continuation pairs.
            grad: keep the autograd graph (for REINFORCE); all requests then form one forward
                pass, so pass one micro-batch per call. Without it, requests are chunked by
                `logprob_batch_size` under ``torch.no_grad()``.
            distributions: also return `Logprobs.log_dist`, the full next-token distribution at
                every continuation position (tokens x vocab floats: keep batches small).
        """
        if grad:
            return self._logprobs_batch(requests, distributions=distributions)
        parts = []
        with torch.no_grad():
            for start in range(0, len(requests), self.logprob_batch_size):
                parts.append(self._logprobs_batch(requests[start:start + self.logprob_batch_size],
                                                  distributions=distributions))
        if not parts:
            return Logprobs(torch.zeros(0), torch.zeros(0, dtype=torch.long), ())
        return Logprobs(sums=torch.cat([p.sums for p in parts]),
                        counts=torch.cat([p.counts for p in parts]),
                        per_token=tuple(t for p in parts for t in p.per_token),
                        log_dist=torch.cat([p.log_dist for p in parts]) if distributions else None)

    @torch.no_grad()
    def next_token_logprobs(self, prompts: Sequence[Prompt]) -> torch.Tensor:
        """Returns (n, vocab) log-probabilities of the token that follows each prompt.

        One forward pass per prompt (in batches of `logprob_batch_size`, a prefix they all share
        run once), and the LM head only at the last position: choosing among k one-token answers
        costs one pass, not k.
        """
        out = []
        for start in range(0, len(prompts), self.logprob_batch_size):
            encoded = [self.encode(p) for p in prompts[start:start + self.logprob_batch_size]]
            # right padding: the last real token is at len - 1
            input_ids, mask = pad_batch(encoded, self.pad_id, left=False)
            hidden, shared = self._body(input_ids, mask, encoded)
            last = hidden[torch.arange(len(encoded), device=self.device),
                          torch.tensor([len(e) - 1 - shared for e in encoded], device=self.device)]
            out.append(torch.log_softmax(self._head(last), dim=-1).cpu())
        return torch.cat(out) if out else torch.zeros(0)

    def _head(self, hidden: torch.Tensor) -> torch.Tensor:
        logits = self.model.get_output_embeddings()(hidden).float()
        cap = getattr(self.model.config, "final_logit_softcapping", None)
        if cap:  # Gemma-2 style models squash logits before the softmax
            logits = torch.tanh(logits / cap) * cap
        return logits

    def _body(self, input_ids: torch.Tensor, mask: torch.Tensor, prompts: Sequence[Sequence[int]]
              ) -> tuple[torch.Tensor, int]:
        """Runs the model body on right-padded rows; returns (hidden states, shared) where the
        hidden states start at position `shared` (the length of a prefix run once, or 0)."""
        device = self.device
        shared = shared_prefix(prompts, self.min_shared_prefix)
        if not shared:
            return self.model.base_model(input_ids=input_ids.to(device), attention_mask=mask.to(device),
                                         use_cache=False)[0], 0
        # The common prefix once, its keys and values repeated for every row (autograd sums
        # the rows' gradients back into it).
        cache = self.model.base_model(input_ids=input_ids[:1, :shared].to(device), use_cache=True).past_key_values
        cache.batch_repeat_interleave(len(input_ids))
        hidden = self.model.base_model(input_ids=input_ids[:, shared:].to(device), attention_mask=mask.to(device),
                                       past_key_values=cache, use_cache=True)[0]
        return hidden, shared

    def _continuation_ids(self, req: LogprobRequest) -> list[int]:
        if req.continuation_ids is not None:
            return list(req.continuation_ids)
        return self.tokenizer(req.continuation, add_special_tokens=False,
                              return_attention_mask=False)["input_ids"]

    def _logprobs_batch(self, requests: Sequence[LogprobRequest], *, distributions: bool = False
                        ) -> Logprobs:
        prompts = [self.encode(r.prompt) for r in requests]
        conts = [self._continuation_ids(r) for r in requests]
        input_ids, mask = pad_batch([p + c for p, c in zip(prompts, conts)], self.pad_id, left=False)
        rows, cols, targets = [], [], []
        for row, (p, c) in enumerate(zip(prompts, conts)):
            positions = range(len(p) - 1, len(p) + len(c) - 1)  # hidden state t predicts t + 1
            rows += [row] * len(c)
            cols += positions
            targets += c
        device = self.device
        hidden, shared = self._body(input_ids, mask, prompts)
        cols = [c - shared for c in cols]
        rows_t = torch.tensor(rows, dtype=torch.long, device=device)
        picked = hidden[rows_t, torch.tensor(cols, dtype=torch.long, device=device)]
        targets_t = torch.tensor(targets, dtype=torch.long, device=device)
        if distributions or getattr(self.model.config, "final_logit_softcapping", None):
            log_dist = torch.log_softmax(self._head(picked), dim=-1)
            token_lp = log_dist.gather(1, targets_t[:, None])[:, 0]
        else:  # only the chosen tokens: no (tokens x vocab) log-softmax kept for backward
            log_dist = None
            token_lp = token_logprobs(self.model.get_output_embeddings()(picked), targets_t)
        counts = torch.tensor([len(c) for c in conts], dtype=torch.long)
        sums = torch.zeros(len(requests), dtype=token_lp.dtype, device=device)
        sums = sums.index_add(0, rows_t, token_lp)
        return Logprobs(sums=sums, counts=counts.to(device),
                        per_token=tuple(torch.split(token_lp, counts.tolist())),
                        log_dist=log_dist)


class _TokenLogprobs(torch.autograd.Function):
    """log softmax(logits)[target] per row, in fp32 or wider; keeps the softmax for backward,
    in the logits' dtype, and makes few passes over the (rows x vocab) block."""

    @staticmethod
    def forward(ctx, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        wide = logits.to(torch.promote_types(logits.dtype, torch.float32), copy=True)
        picked = wide.gather(1, targets[:, None])[:, 0]
        top = wide.amax(dim=-1, keepdim=True)
        probs = wide.sub_(top).exp_()
        total = probs.sum(dim=-1, keepdim=True)
        ctx.save_for_backward(probs.div_(total).to(logits.dtype), targets)
        return picked - (top + total.log())[:, 0]

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        probs, targets = ctx.saved_tensors
        # d/dlogits = g·(onehot − softmax)
        out = probs * (-grad[:, None]).to(probs.dtype)
        out.scatter_add_(1, targets[:, None], grad[:, None].to(out.dtype))
        return out, None


def token_logprobs(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Returns log softmax(logits)[i, targets[i]] for each row, differentiable in `logits`.

    The same values as `log_softmax(logits.float()).gather(...)`, with less memory and time in
    backpropagation: the (rows x vocab) fp32 log-softmax is not kept, and the gradient is formed
    in one pass.
    """
    return _TokenLogprobs.apply(logits, targets)
