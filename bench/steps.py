"""Steps the benchmarks compare: the kit's and a reference in the official code's style.

`reference_generate` is the reference rollout: one left-padded batch through `model.generate`.

Both set z.grad of a `ReinforceTrainer` to the gradient of −Σ r·log π(ŷ|x)/N for the same
rollouts; `timed` runs one and returns (seconds, gradients), `counted_flops` counts the FLOPs of
its matrix products, and `gemm_rate` measures how fast this machine multiplies matrices.
"""
from __future__ import annotations

import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from t2lib.core.experts import effective_scale
from t2lib.methods.reinforce import ReinforceTrainer


def reference_generate(model, tokenizer, encoded: list[list[int]], max_new_tokens: int, eos: list[int]):
    """One left-padded batch through `generate` (dynamic cache); returns each row's new token ids."""
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos[0]
    width = max(map(len, encoded))
    ids = torch.full((len(encoded), width), pad, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, e in enumerate(encoded):
        ids[row, width - len(e):] = torch.tensor(e)
        mask[row, width - len(e):] = 1
    with torch.no_grad():
        out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens, do_sample=False,
                             eos_token_id=eos, pad_token_id=pad)
    rows = []
    for row in out[:, width:].tolist():
        ends = [i for i, t in enumerate(row) if t in eos]
        rows.append(tuple(row[:ends[0] + 1] if ends else row))
    return rows


def official_compose(f, scale: torch.Tensor) -> torch.Tensor:
    """W' as the official code builds it: two dense products with a diagonal matrix."""
    return f.U.float() @ torch.diag_embed((f.S * scale).float()) @ f.Vh.float()


def reference_update(trainer: ReinforceTrainer, requests, adv) -> None:
    """The official code's step structure: sets z.grad."""
    svf, backend = trainer.trained.svf, trainer.backend
    decomp, param = svf.decomp, trainer.config.parameterization

    def compose(name):
        return official_compose(decomp[name], effective_scale(trainer.params[name], decomp[name].S, param))

    with torch.no_grad():
        for name in trainer.targets:
            svf.params[name].copy_(compose(name))
    live = [svf.params[n] for n in trainer.targets]
    for p in live:
        p.requires_grad_(True)
    try:
        for req, a in zip(requests, adv):
            prompt = backend.encode(req.prompt)
            ids = torch.tensor([prompt + list(req.continuation_ids)], device=backend.device)
            logits = svf.model(input_ids=ids).logits[:, len(prompt) - 1:-1].float()
            logp = torch.log_softmax(logits, dim=-1)
            chosen = logp.gather(2, ids[:, len(prompt):, None])[..., 0]
            (-a * chosen.sum() / len(requests)).backward()
        for name, p in zip(trainer.targets, live):
            compose(name).backward(p.grad.float())
    finally:
        for p in live:
            p.requires_grad_(False)
            p.grad = None
        svf.restore()


def kit_update(trainer: ReinforceTrainer, requests, adv) -> None:
    trainer.accumulate_gradient(requests, adv)


def sync() -> None:
    """Waits for queued GPU work, so wall-clock times mean something."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed(fn, trainer, *args) -> tuple[float, dict[str, torch.Tensor]]:
    for p in trainer.params.values():
        p.grad = None
    sync()
    start = time.perf_counter()
    fn(trainer, *args)
    sync()
    seconds = time.perf_counter() - start
    grads = {n: p.grad.clone() for n, p in trainer.params.items()}
    return seconds, grads


def counted_flops(fn, trainer, *args) -> int:
    """Returns the FLOPs of the matrix products (mm, bmm, attention) one run of `fn` performs,
    counted by torch's FlopCounterMode; elementwise work is not counted."""
    for p in trainer.params.values():
        p.grad = None
    with FlopCounterMode(display=False) as counter:
        fn(trainer, *args)
    return counter.get_total_flops()


def gemm_rate(m: int, k: int, n: int, dtype: torch.dtype, *, device: str = "cpu", repeats: int = 5,
              onednn: bool = False) -> float:
    """Returns the best FLOP/s of an (m x k) @ (k x n) product in `dtype` over `repeats` runs.
    `onednn`: through oneDNN's linear kernel with the weight in its blocked layout (the product
    the HF backend's decoding loop uses on a CPU) instead of `@`."""
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(m, k, generator=gen).to(device, dtype)
    b = torch.randn(k, n, generator=gen).to(device, dtype)
    if onednn:
        packed = torch.ops.mkldnn._reorder_linear_weight(b.t().contiguous(), m)
        product = lambda: torch.ops.mkldnn._linear_pointwise(a, packed, None, "none", [], "")  # noqa: E731
    else:
        product = lambda: a @ b  # noqa: E731
    product()  # warm-up: thread pool, kernel selection
    best = float("inf")
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        product()
        sync()
        best = min(best, time.perf_counter() - start)
    return 2 * m * k * n / best
