"""Benchmark at paper scale: generation, weight sync and one training step, random weights in
Llama-3-8B shapes, the HF backend against the vLLM backend on one GPU.

    python bench/generate_gpu.py                 # one GPU: batches of 64 and 256 x 512 new tokens, bf16
    python bench/generate_gpu.py --small         # a CPU check of the script (2 layers, 8 x 32 tokens)
    python bench/generate_gpu.py --no-vllm       # the HF half alone (runs where vllm is not installed)

Prints, measured in this run (ratios against the HF backend's dynamic-cache `generate`):
- tok/s of the kit's HF backend and of its vLLM backend on the same prompts (128 random tokens,
  greedy, up to `--new-tokens`), at each batch size in `--batches`;
- the time to load the 96 MLP matrices (with their fused siblings) into the running engine after an
  expert is applied, and after the base is restored (`VLLMBackend.sync_weights` + `reload_weights`);
- one paper-shape training step on one GPU: rollouts of `--step-batch` prompts through vLLM, the
  factored REINFORCE gradient through the HF model in micro-batches of `--micro`, the AdamW update;
  its parts' times and the process's peak GPU memory (torch's reserved memory: the engine runs in
  this process, so its weights and KV cache are counted).
Targets on a GPU (the vLLM issue): vLLM ≥ 10× HF, sync ≤ 0.5 s, the step within one 80 GB GPU.
The random model is saved to a temporary folder for the engine to load (16 GB of disk at 8B).
Asserts nothing about speed.
"""
from __future__ import annotations

import argparse
import importlib.util
import tempfile
import time

import torch
from transformers import AutoTokenizer

from fishfarm.backends import HFBackend
from fishfarm.task import Task
from fishfarm.types import GenerationRequest, Prompt, SamplingParams, Score
from t2lib.core.models import DEFAULT_MODEL, resolve_model
from t2lib.methods.trainable import SVFParams
from t2lib.methods.reinforce import ReinforceConfig, ReinforceTrainer
from t2lib.core.svf import SVFModel

from steps import sync  # bench/steps.py
from train_step_gpu import LLAMA3_8B, SMALL, random_decomposition, random_model  # bench/train_step_gpu.py


def random_prompts(tokenizer, n: int, length: int, seed: int = 0) -> list[Prompt]:
    gen = torch.Generator().manual_seed(seed)
    return [Prompt.raw(tokenizer.decode(torch.randint(1000, len(tokenizer), (length,), generator=gen).tolist()))
            for _ in range(n)]


def timed_generate(backend, prompts, new_tokens: int) -> tuple[float, int]:
    requests = [GenerationRequest(p, SamplingParams(max_new_tokens=new_tokens)) for p in prompts]
    sync()
    start = time.perf_counter()
    out = backend.generate(requests, progress=False)
    sync()
    return time.perf_counter() - start, sum(len(r.token_ids) for r in out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="tiny shapes: check the script on a CPU")
    parser.add_argument("--batches", type=int, nargs="+", help="generation batch sizes (default 64 256)")
    parser.add_argument("--new-tokens", type=int, help="new tokens per answer (default 512)")
    parser.add_argument("--step-batch", type=int, help="prompts in the training step (default 256)")
    parser.add_argument("--micro", type=int, default=4, help="micro-batch of the gradient passes")
    parser.add_argument("--vllm-memory", type=float, default=0.3, help="the engine's share of the GPU")
    parser.add_argument("--no-vllm", action="store_true", help="the HF half alone")
    parser.add_argument("--tokenizer", help="tokenizer folder (default: the kit's default model's); "
                                            "only its vocabulary size matters")
    args = parser.parse_args()
    cuda = torch.cuda.is_available()
    device, dtype = ("cuda", torch.bfloat16) if cuda else ("cpu", torch.float32)
    batches = args.batches or ([4, 8] if args.small else [64, 256])
    new_tokens = args.new_tokens or (32 if args.small else 512)
    step_batch = args.step_batch or (8 if args.small else 256)
    with_vllm = not args.no_vllm and importlib.util.find_spec("vllm") is not None

    model = random_model(SMALL if args.small else LLAMA3_8B, device, dtype)
    decomp = random_decomposition(model, "mlp", dtype)
    svf = SVFModel(model, decomp, model_id="random-llama-3-8b-shapes")
    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer or resolve_model(DEFAULT_MODEL).path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    name = torch.cuda.get_device_name() if cuda else "CPU"
    print(f"{name}: {sum(p.numel() for p in model.parameters()) / 1e9:.2f}B parameters ({dtype}), "
          f"{len(decomp)} target matrices; vllm {'installed' if with_vllm else 'not used'}", flush=True)
    hf = HFBackend(model, tokenizer, batch_size=max(batches), max_batch_tokens=None, progress=False)

    with tempfile.TemporaryDirectory() as folder:
        vllm = None
        if with_vllm:
            from fishfarm.backends.vllm import VLLMBackend

            model.save_pretrained(folder)
            tokenizer.save_pretrained(folder)
            vllm = VLLMBackend(model, tokenizer, model_path=folder, batch_size=max(step_batch, max(batches)),
                               max_model_len=1024, gpu_memory_utilization=args.vllm_memory, progress=False)
            svf.attach(vllm)
            print(f"vLLM engine start: {vllm.start_seconds:.1f} s (enforce_eager)", flush=True)

        for batch in batches:
            prompts = random_prompts(tokenizer, batch, 128)
            hf_s, hf_tokens = timed_generate(hf, prompts, new_tokens)
            line = f"batch {batch} x {new_tokens}: HF {hf_tokens / hf_s:,.0f} tok/s ({hf_s:.1f} s)"
            if vllm is not None:
                timed_generate(vllm, prompts[:2], 4)  # warm-up
                v_s, v_tokens = timed_generate(vllm, prompts, new_tokens)
                line += f", vLLM {v_tokens / v_s:,.0f} tok/s ({v_s:.1f} s) -> x{(v_tokens / v_s) / (hf_tokens / hf_s):.1f}"
            print(line, flush=True)

        if vllm is not None:
            expert = svf.new_expert(name="random", noise_std=0.05, seed=1)
            probe = random_prompts(tokenizer, 1, 16)
            loads = []
            for _ in range(3):
                for weights in (expert, None):
                    svf.apply(weights) if weights is not None else svf.restore()
                    timed_generate(vllm, probe, 1)
                    loads.append(vllm.sync_seconds[-1])
            print(f"sync of {len(decomp)} MLP matrices into the engine: "
                  + ", ".join(f"{s:.2f}" for s in loads) + " s", flush=True)

        records = [{"id": str(i), "prompt": p} for i, p in enumerate(random_prompts(tokenizer, step_batch, 128, seed=1))]
        task = Task("random", records, id_field="id", prompt=lambda r: r["prompt"],
                    scorer=lambda answer, r: Score(correct=int(r["id"]) % 2 == 0),
                    sampling=SamplingParams(max_new_tokens=new_tokens))
        config = ReinforceConfig(batch_size=step_batch, micro_batch_size=args.micro, lr=2e-3, grad_clip=1e-3,
                                 parameterization="sigmoid", init_noise=0.01)
        with tempfile.TemporaryDirectory() as run_dir:
            trainer = ReinforceTrainer(SVFParams(svf), vllm or hf, task, config=config, run_dir=run_dir, progress=False,
                                       grad_backend=hf)
            if cuda:
                torch.cuda.reset_peak_memory_stats()
            row = trainer.step(task.ids, step=1)
            peak = torch.cuda.max_memory_reserved() / 2**30 if cuda else float("nan")
        print(f"training step ({step_batch} prompts, rollouts by {'vLLM' if vllm else 'HF'}, micro-batches of "
              f"{args.micro}): rollouts {row['rollout_s']:.1f} s ({row['answer_tokens']:.0f} tokens each), "
              f"gradient {row['gradient_s']:.1f} s (with the AdamW step {row['update_s']:.1f} s); peak GPU memory {peak:.1f} GiB",
              flush=True)


if __name__ == "__main__":
    main()
