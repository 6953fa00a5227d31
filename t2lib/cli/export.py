"""`python -m t2lib export`: an SVF expert, or a mixture of experts, as a PEFT LoRA adapter folder;
with --rank-sweep, the accuracy of the shipped experts' adapters against their rank.

    python -m t2lib export --preset tiny --expert experts/tiny/math --out build/lora/math           # full rank, exact
    python -m t2lib export --preset tiny --expert experts/tiny/math --out build/lora/math-r64 --rank 64
    python -m t2lib export --preset tiny --expert experts/tiny/math --expert experts/tiny/code \\
        --alpha 0.6 0.4 --out build/lora/mix --energy 0.9
    python -m t2lib export --rank-sweep --preset tiny    # figures/table_lora_rank_sweep.csv + fig09

The folder loads with `peft.PeftModel.from_pretrained(base_model, folder)`, in vLLM with
`--enable-lora --lora-modules name=folder`, and converts for llama.cpp with convert_lora_to_gguf.py
(docs/export_lora.md).
"""
from __future__ import annotations

import argparse
import time
from typing import Sequence

from t2lib.presets import add_preset_arguments, preset_from_args
from t2lib.runs.export import DTYPES, SWEEP_RANKS, export_files, rank_sweep, write_rank_sweep


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m t2lib export",
                                description="Export SVF experts as PEFT LoRA adapters (or sweep the adapter's rank).")
    add_preset_arguments(p)
    p.add_argument("--expert", action="append", metavar="PATH",
                   help="an expert file (.safetensors, .json or the stem); repeat it, with --alpha, for a mixture")
    p.add_argument("--alpha", type=float, nargs="+", help="mixing weights, one per --expert")
    p.add_argument("--out", help="the adapter folder to write")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--rank", type=int, help="components kept per matrix (default: all, exact)")
    budget.add_argument("--energy", type=float, help="instead of --rank: the share of each matrix's ‖ΔW‖² to keep")
    p.add_argument("--dtype", choices=tuple(DTYPES), default="float32", help="adapter tensors (default float32)")
    p.add_argument("--rank-sweep", action="store_true", help="score the shipped experts' adapters at ranks "
                   f"{', '.join(str(r or 'full') for r in SWEEP_RANKS)} on their test splits")
    p.add_argument("--experts", nargs="+", help="with --rank-sweep: expert names (default: every shipped one)")
    p.add_argument("--ranks", type=int, nargs="+", help="with --rank-sweep: the ranks (full is always added)")
    p.add_argument("--fresh", action="store_true", help="with --rank-sweep: rescore ranks kept by an earlier run")
    p.add_argument("--kept-only", action="store_true",
                   help="with --rank-sweep: write the table from the ranks earlier runs scored, scoring nothing")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    preset = preset_from_args(args)
    started = time.time()
    if args.rank_sweep:
        from t2lib.session import Session

        results = rank_sweep(Session(preset), args.experts, tuple(args.ranks or SWEEP_RANKS), fresh=args.fresh,
                             kept_only=args.kept_only)
        path = write_rank_sweep(results, preset, started=started)
        print(f"wrote {path} in {time.time() - started:.0f} s; smallest rank within the expert's paired "
              f"interval: {results['smallest_within']}"
              + (f"; not scored yet: {', '.join(results['not_scored'])}" if results["not_scored"] else ""))
        return 0
    if not args.expert or not args.out:
        p.error("give --expert PATH and --out FOLDER (or --rank-sweep)")
    done = export_files(preset, args.expert, args.out, alpha=args.alpha, rank=args.rank, energy=args.energy,
                        dtype=args.dtype)
    low = min(done.energy.values())
    print(f"wrote {done.folder} (rank {done.rank}, energy kept ≥ {low:.4f} in every matrix, {done.bytes:,} bytes)")
    return 0
