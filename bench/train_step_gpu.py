"""Benchmark at paper scale: one REINFORCE update with random weights in Llama-3-8B shapes.

    python bench/train_step_gpu.py                  # on one GPU: 64 sequences x 384 tokens, bf16
    python bench/train_step_gpu.py --small          # a CPU check of the script (2 layers, 4 x 64)

Random weights are enough for timing: the cost of a step depends on shapes, not values, and no
checkpoint has to be downloaded. The SVD factors are random too (U, Vᵀ with orthonormal-scale
entries), and the target matrices are set to their composition, so the kit's identity checks hold.
Prints, measured in this run:
- the kit's update (targets computed from their factors so autograd reaches z directly, micro-
  batches with a shared prefix run once and the LM head only at answer positions) against the
  FLOP floor of an update through dense W' (its forward and input-gradient products, the weight
  gradients of the targets, the LM head at the answer positions), at the GPU's dense bf16 peak;
  the FLOPs of the kit's own factored products; its peak memory;
- the reference-style update (the official code's per-sample loop and composition);
- a PEFT LoRA r=16 update on q/v (the paper's LoRA baseline), same batch and micro-batches.
"""
from __future__ import annotations

import argparse
import tempfile
import time

import torch
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

from fishfarm.backends import HFBackend
from fishfarm.task import Task
from fishfarm.types import LogprobRequest, Prompt, SamplingParams
from t2lib.methods.trainable import SVFParams
from t2lib.methods.reinforce import ReinforceConfig, ReinforceTrainer
from t2lib.core.svd import Decomposition, SVDFactors, find_target_names, target_modules
from t2lib.core.fingerprint import tensor_digest
from t2lib.core.models import resolve_model, DEFAULT_MODEL
from t2lib.core.svf import SVFModel

from steps import kit_update, reference_update, sync, timed  # bench/steps.py

LLAMA3_8B = dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                 num_key_value_heads=8, vocab_size=128256, max_position_embeddings=8192, rope_theta=500000.0)
SMALL = dict(hidden_size=256, intermediate_size=768, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, vocab_size=128256, max_position_embeddings=1024)
PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0}  # dense, no sparsity


def random_model(shapes: dict, device: str, dtype: torch.dtype) -> LlamaForCausalLM:
    config = LlamaConfig(**shapes, tie_word_embeddings=False)
    default = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # initialise in the target dtype: no fp32 copy of 8B weights
    try:
        with torch.device(device):
            model = LlamaForCausalLM(config)
    finally:
        torch.set_default_dtype(default)
    return model.eval().requires_grad_(False)


def random_decomposition(model, targets: str, storage: torch.dtype) -> Decomposition:
    """Random factors whose composition is written into the target matrices."""
    params = dict(model.named_parameters())
    gen = torch.Generator(device=next(model.parameters()).device).manual_seed(0)
    factors, digests = {}, {}
    for name in find_target_names(model, target_modules(targets)):
        out_dim, in_dim = params[name].shape
        r = min(out_dim, in_dim)
        dev = params[name].device
        U = (torch.randn(out_dim, r, device=dev, generator=gen) / r ** 0.5).to(storage)
        Vh = (torch.randn(r, in_dim, device=dev, generator=gen) / r ** 0.5).to(storage)
        S = torch.linspace(2.0, 0.01, r, device=dev)
        f = SVDFactors(U, S, Vh)
        with torch.no_grad():
            params[name].copy_(f.compose().to(params[name].dtype))
        factors[name], digests[name] = f, tensor_digest(params[name])
    return Decomposition(factors, digests=digests, targets=target_modules(targets))


def flop_floor(model, lengths: list[int], answer_tokens: int, targets: list[str], *, factored: bool = False) -> float:
    """FLOPs of the matrix products of one update: forward and input gradients through every
    linear layer and attention, the LM head at the answer positions (forward and input gradient),
    and for the targets either the weight gradients of dense W' (the floor of that formulation)
    or, `factored`, the two thin products Vᵀx and U(·) in place of Wx (no weight gradients)."""
    params = dict(model.named_parameters())
    linear = sum(p.numel() for n, p in params.items() if p.dim() == 2 and "embed" not in n and "lm_head" not in n)
    target = sum(params[n].numel() for n in targets)
    thin = sum(min(params[n].shape) * sum(params[n].shape) for n in targets)  # r·(in + out) per target
    head = model.get_output_embeddings().weight.numel()
    cfg = model.config
    tokens = sum(lengths)
    attention = 2 * 2 * cfg.num_hidden_layers * cfg.hidden_size * sum(s * s for s in lengths)  # QKᵀ and AV
    common = 2 * head * answer_tokens * 2 + attention * 2
    if factored:
        return (2 * (linear - target + thin) * tokens) * 2 + common
    return (2 * linear * tokens) * 2 + 2 * target * tokens + common


def agreement(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> str:
    """Cosine similarity and relative error of two gradients over all z (both in bf16 on a GPU)."""
    x = torch.cat([a[n].float().reshape(-1) for n in a])
    y = torch.cat([b[n].float().reshape(-1) for n in a])
    cos = torch.nn.functional.cosine_similarity(x, y, dim=0).item()
    rel = ((x - y).norm() / y.norm()).item()
    return f"cosine {cos:.5f}, relative error {rel:.3%}"


def lora_update(model, backend, requests, adv, micro: int) -> float:
    from peft import LoraConfig, get_peft_model

    lora = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05,
                                            target_modules=["q_proj", "v_proj"]))
    params = [p for p in lora.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4)
    peft_backend = HFBackend(lora.base_model.model, backend.tokenizer, progress=False)
    lora.train()

    def step():
        for start in range(0, len(requests), micro):
            lp = peft_backend.logprobs(requests[start:start + micro], grad=True)
            (-(adv[start:start + micro].to(lp.sums.device) * lp.sums).sum() / len(requests)).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    step()  # warm-up: allocator, kernels
    sync()
    start = time.perf_counter()
    step()
    sync()
    seconds = time.perf_counter() - start
    lora.unload()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="tiny shapes: check the script on a CPU")
    parser.add_argument("--sequences", type=int)
    parser.add_argument("--prompt-tokens", type=int)
    parser.add_argument("--answer-tokens", type=int)
    parser.add_argument("--micro", type=int, default=8)
    parser.add_argument("--skip-reference", action="store_true")
    parser.add_argument("--skip-lora", action="store_true")
    parser.add_argument("--tokenizer", help="tokenizer folder (default: the kit's default model's); "
                                            "only its vocabulary size matters")
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    n = args.sequences or (4 if args.small else 64)
    prompt_len = args.prompt_tokens or (24 if args.small else 128)
    answer_len = args.answer_tokens or (40 if args.small else 256)

    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    model = random_model(SMALL if args.small else LLAMA3_8B, device, dtype)
    decomp = random_decomposition(model, "mlp", torch.bfloat16 if device == "cuda" else torch.float32)
    svf = SVFModel(model, decomp, model_id="random-llama-3-8b-shapes")
    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer or resolve_model(DEFAULT_MODEL).path)  # ids are random
    backend = HFBackend(model, tokenizer, progress=False)
    gen = torch.Generator().manual_seed(0)
    vocab = len(tokenizer)
    requests = []
    for _ in range(n):
        ids = torch.randint(1000, vocab, (prompt_len + answer_len,), generator=gen).tolist()
        prompt = Prompt.raw(tokenizer.decode(ids[:prompt_len]))
        requests.append(LogprobRequest(prompt, continuation_ids=tuple(ids[prompt_len:])))
    adv = torch.randn(n, generator=gen)
    task = Task("random", [{"id": "0"}], id_field="id", prompt=lambda r: "", sampling=SamplingParams(max_new_tokens=1))
    with tempfile.TemporaryDirectory() as tmp:
        trainer = ReinforceTrainer(SVFParams(svf), backend, task, run_dir=tmp, progress=False,
                                   config=ReinforceConfig(batch_size=n, micro_batch_size=args.micro, grad_clip=None,
                                                          parameterization="sigmoid"))
    lengths = [len(backend.encode(r.prompt)) + answer_len for r in requests]
    tokens = sum(lengths)
    name = torch.cuda.get_device_name() if device == "cuda" else "CPU"
    print(f"{name}: {sum(p.numel() for p in model.parameters()) / 1e9:.2f}B parameters ({dtype}), "
          f"{len(decomp)} target matrices, {n} sequences, {tokens} tokens, micro-batches of {args.micro}")

    timed(kit_update, trainer, requests, adv)  # warm-up
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    kit_s, kit_grads = timed(kit_update, trainer, requests, adv)
    peak = torch.cuda.max_memory_allocated() / 2 ** 30 if device == "cuda" else float("nan")
    floor = flop_floor(model, lengths, n * answer_len, list(decomp))
    own = flop_floor(model, lengths, n * answer_len, list(decomp), factored=True)
    print(f"kit update: {kit_s:.2f} s, peak memory {peak:.1f} GiB; dense-W' floor {floor / 1e12:.1f} TFLOP, "
          f"the kit's factored products {own / 1e12:.1f} TFLOP")
    peak_tflops = next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)
    if peak_tflops:
        print(f"dense-W' floor at {peak_tflops:.0f} TFLOP/s: {floor / peak_tflops / 1e12:.2f} s "
              f"-> kit / floor {kit_s / (floor / peak_tflops / 1e12):.2f}; the kit's own products run at "
              f"{own / 1e12 / kit_s / peak_tflops:.0%} of peak")
    if not args.skip_reference:
        ref_s, ref_grads = timed(reference_update, trainer, requests, adv)
        print(f"reference-style update (per-sample loop): {ref_s:.2f} s -> ratio {ref_s / kit_s:.2f}x")
        print(f"gradient agreement, kit vs reference: {agreement(kit_grads, ref_grads)}")
    if not args.skip_lora:
        lora_s = lora_update(model, backend, requests, adv, args.micro)
        print(f"PEFT LoRA r=16 (q, v) update: {lora_s:.2f} s -> kit / LoRA {kit_s / lora_s:.2f}")


if __name__ == "__main__":
    main()
