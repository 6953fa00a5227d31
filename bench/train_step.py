"""Benchmark: the kit's REINFORCE step (rollouts + update) against a reference-style one.

    .venv/bin/python bench/train_step.py                 # default model (tiny preset), 16 prompts
    .venv/bin/python bench/train_step.py --batch 16 --micro 8 --repeats 3
    .venv/bin/python bench/train_step.py --variants kit     # the kit's settings only (minutes faster)

Rollouts (greedy, the training task's answer budget, as the tiny preset's training makes them):
- reference-style: one left-padded batch through `model.generate` with its dynamic cache;
- kit: the preset's backend (on the HF backend, its lean decoding loop).
Both are timed (best of `--repeats`) and their answers compared token for token. The updates then
start from the same rollouts (the kit's) and the same z, and produce the gradient of the same loss
−Σ r·log π(ŷ|x)/N with respect to z:
- reference-style (the official code's step): every target matrix recomposed as
  U @ diag_embed(σ·z) @ Vᵀ and copied into the model; then one sample at a time: logits over the
  whole vocabulary and sequence, log-softmax, gather, backward; then every matrix recomposed again
  with a graph and backpropagated with its weight's gradient. Model dtype (fp32 on the CPU).
- kit (`ReinforceTrainer.accumulate_gradient` with the preset's config): the base weights in
  place and each target layer computing U((σ·z) ⊙ Vᵀx) from its factors, so autograd reaches z
  directly; micro-batches of similar length whose shared prefix (the system prompt) runs once;
  LM head only at the answer positions; eager attention and the preset's `grad_dtype` (tiny:
  "auto", bf16 autocast where the CPU has AVX512-BF16 or AMX, else fp32).
- kit in the model's dtype: the same without autocast;
- kit with bf16 autocast whatever the CPU (emulated where it lacks bf16 instructions);
- kit with the model's own attention (SDPA) for the log-prob passes instead of the preset's.
Times are the best of `--repeats`, measured in this run, in alternating order (the machine is
noisy). The script prints how far each gradient is from the reference and the ratios; it asserts
nothing about speed. It also counts each path's matrix-product FLOPs (torch's FlopCounterMode, one
more untimed run each) and measures this machine's matrix-product rate in fp32 and bf16 on an
MLP-shaped product, and prints each kit path's ceiling: the reference's time over the time the
path's products alone would take at that rate (nothing else counted). A ceiling under a target
ratio means the same products cannot reach it at the rate measured for that shape in that dtype
(other shapes may run somewhat faster or slower). Last, the whole step: reference-style rollouts +
reference update against the kit's rollouts + the kit's update.
"""
from __future__ import annotations

import argparse
import tempfile
import time

import torch

from fishfarm.types import LogprobRequest
from t2lib.presets import get_preset
from t2lib.hardware import native_bf16
from t2lib.methods.trainable import SVFParams
from t2lib.methods.reinforce import ReinforceConfig, ReinforceTrainer
from t2lib.session import Session
from t2lib.runs.training import task_splits

from steps import counted_flops, gemm_rate, kit_update, reference_generate, reference_update, timed  # bench/steps.py


VARIANTS = ("kit", "kit, model dtype", "kit, bf16 autocast", "kit, SDPA attention")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--task", default="add_word")
    parser.add_argument("--batch", type=int, default=16, help="prompts in the batch")
    parser.add_argument("--micro", type=int, default=8, help="kit micro-batch size")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS),
                        help="kit update variants to time (\"kit\" is always timed; bf16 autocast takes minutes "
                             "where the CPU lacks bf16 instructions)")
    args = parser.parse_args()

    preset = get_preset(args.preset)
    session = Session(preset, progress=False)
    task = task_splits(preset, args.task).train
    base = dict(batch_size=args.batch, micro_batch_size=args.micro, logprob_reduction="sum", grad_clip=None)
    trainers = {}
    variants = {"kit": dict(grad_dtype=preset.train.grad_dtype, grad_attention=preset.train.grad_attention),
                "kit, model dtype": dict(grad_dtype=None),
                "kit, bf16 autocast": dict(grad_dtype="bfloat16", grad_attention=preset.train.grad_attention),
                "kit, SDPA attention": dict(grad_dtype=preset.train.grad_dtype, grad_attention="sdpa")}
    variants = {label: options for label, options in variants.items() if label == "kit" or label in args.variants}
    for label, options in variants.items():
        with tempfile.TemporaryDirectory() as tmp:
            trainers[label] = ReinforceTrainer(SVFParams(session.svf), session.backend, task, run_dir=tmp, progress=False,
                                               config=ReinforceConfig(**base, **options))
    trainer = trainers["kit"]
    with torch.no_grad():  # a z away from 1, so the gradient is not a special case
        gen = torch.Generator().manual_seed(0)
        for n, p in trainer.params.items():
            p.add_(0.02 * torch.randn(p.shape, generator=gen))
            for other in trainers.values():
                other.z[n].copy_(p)
    ids = list(task.ids[:args.batch])
    requests = [task.request(s) for s in ids]
    model, tok = session.lm.model, session.lm.tokenizer
    encoded = [session.backend.encode(r.prompt) for r in requests]
    budget = requests[0].sampling.max_new_tokens
    rollout = {"reference": float("inf"), "kit": float("inf")}
    for _ in range(args.repeats):
        start = time.perf_counter()
        reference_ids = reference_generate(model, tok, encoded, budget, sorted(session.backend.eos_ids))
        rollout["reference"] = min(rollout["reference"], time.perf_counter() - start)
        start = time.perf_counter()
        generations = session.backend.generate(requests, progress=False)
        rollout["kit"] = min(rollout["kit"], time.perf_counter() - start)
    same = sum(tuple(g.token_ids) == r for g, r in zip(generations, reference_ids))
    rewards = torch.tensor([1.0 if s.correct else -1.0
                            for s in task.score_many(ids, [g.text for g in generations])])
    lp_requests = [LogprobRequest(r.prompt, continuation_ids=g.token_ids) for r, g in zip(requests, generations)]
    tokens = sum(len(session.backend.encode(r.prompt)) + len(r.continuation_ids) for r in lp_requests)
    print(f"model {preset.model} ({session.lm.resolved.variant or 'hub'}), {len(trainer.targets)} target matrices, "
          f"{args.batch} sequences, {tokens} tokens, torch threads {torch.get_num_threads()}")
    print(f"rollouts, {len(requests)} x up to {budget} new tokens, greedy: reference-style generate "
          f"{rollout['reference']:.2f} s, kit ({session.backend_name}"
          f"{', decoding=' + session.backend.decoding if session.backend_name == 'hf' else ''}) "
          f"{rollout['kit']:.2f} s, reference / kit = {rollout['reference'] / rollout['kit']:.2f}x; "
          f"same answers {same}/{len(requests)}")

    paths = {"reference": (reference_update, trainer),
             **{label: (kit_update, owner) for label, owner in trainers.items()}}
    best = {name: float("inf") for name in paths}
    grads = {}
    for _ in range(args.repeats):
        for name, (fn, owner) in paths.items():
            seconds, grads[name] = timed(fn, owner, lp_requests, rewards)
            best[name] = min(best[name], seconds)
    ref = grads["reference"]
    den = sum(float(g.norm() ** 2) for g in ref.values()) ** 0.5
    for name in trainers:
        num = sum(float((grads[name][n] - ref[n]).norm() ** 2) for n in ref) ** 0.5
        flat = torch.cat([grads[name][n].flatten() for n in ref])
        cos = float(torch.nn.functional.cosine_similarity(flat, torch.cat([ref[n].flatten() for n in ref]), dim=0))
        print(f"gradient of {name!r}: |g - g_ref| / |g_ref| = {num / den:.2e}, cosine {cos:.5f}")
    flops = {name: counted_flops(fn, owner, lp_requests, rewards) for name, (fn, owner) in paths.items()}
    device = session.backend.device
    config = session.svf.model.config
    model_dtype = next(session.svf.model.parameters()).dtype
    rows = tokens // -(-args.batch // args.micro)  # tokens in a micro-batch
    shape = (rows, config.hidden_size, config.intermediate_size)
    rates = {None: gemm_rate(*shape, model_dtype, device=device.type)}
    for dtype in sorted({t.autocast_dtype for t in trainers.values()} - {None}):
        rates[dtype] = gemm_rate(*shape, getattr(torch, dtype), device=device.type)
    print(f"update, reference-style (per-sample loop, official composition): {best['reference']:.2f} s, "
          f"{flops['reference'] / 1e9:.0f} GFLOP in matrix products ({flops['reference'] / best['reference'] / 1e9:.0f} GFLOP/s)")
    print(f"kit settings of the {preset.name} preset: grad_dtype={preset.train.grad_dtype} "
          f"(here: {trainers['kit'].autocast_dtype}), "
          f"grad_attention={preset.train.grad_attention}, micro-batches of {args.micro}")
    for name in trainers:
        print(f"update, {name + ':':22s} {best[name]:6.2f} s   reference / this = {best['reference'] / best[name]:.2f}x   "
              f"{flops[name] / 1e9:.0f} GFLOP ({flops[name] / best[name] / 1e9:.0f} GFLOP/s), "
              f"reference / this in FLOPs = {flops['reference'] / flops[name]:.2f}")
    reference_step, kit_step = rollout["reference"] + best["reference"], rollout["kit"] + best["kit"]
    print(f"whole step (rollouts + update): reference-style {reference_step:.2f} s, kit {kit_step:.2f} s, "
          f"reference / kit = {reference_step / kit_step:.2f}x")
    print(f"matrix-product rate here ({device}, native bf16: {'yes' if native_bf16(device) else 'no'}), "
          f"({shape[0]} x {shape[1]}) @ ({shape[1]} x {shape[2]}): "
          + ", ".join(f"{dtype or str(model_dtype).removeprefix('torch.')} {rate / 1e9:.0f} GFLOP/s"
                      for dtype, rate in rates.items()))
    for name, owner in trainers.items():
        floor = flops[name] / rates[owner.autocast_dtype]
        print(f"ceiling, {name + ':':22s} its products alone at that rate take {floor:.2f} s, "
              f"so reference / this <= {best['reference'] / floor:.2f}x here")


if __name__ == "__main__":
    main()
