"""Benchmark: Transformer²'s second pass over a mixed batch, experts as LoRA adapters (one vLLM call)
versus experts applied in place (one weight reload and one call per expert), in one run.

    .venv-vllm/bin/python bench/lora_batch.py                      # rank 512, 8 prompts per task
    .venv-vllm/bin/python bench/lora_batch.py --rank 64 --per-task 16 --base 8

Workload (the tiny preset's model, fp32, greedy, each task's own answer budget): `--per-task` test
prompts of each unseen task (sub_word, fn_string, where_crowd), dispatched by the classification
expert (pass 1, "cls-expert"), plus `--base` add_word prompts answered by the base model.
Paths, each in its own process with its own engine, one after the other (the second reads the
first's dispatch labels, so both answer the same prompts with the same experts):
- in-place: the default engine (no LoRA); per label, the expert's matrices reloaded into the
  engine (`reload_weights`), then its prompts answered; wall time includes the reloads;
- adapters: an engine with LoRA on (`max_lora_rank` = `--rank`); every expert exported once as a
  rank-`--rank` adapter (`t2lib.methods.adapters`; export time printed apart), then every prompt,
  base model's included, in ONE engine call (wall time includes loading the adapters into it).
It prints tokens per second, wall time, their ratio, each adapter's energy kept, and how many
answers equal the in-place path's token for token (rank 512 < SmolLM2's 576 singular values per
MLP matrix: a truncation, so some may differ). It asserts nothing about speed.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

UNSEEN = ("sub_word", "fn_string", "where_crowd")


def workload(preset, per_task: int, base: int):
    """Returns (requests, source task of each) for the mixed batch."""
    requests, sources = [], []
    for name in UNSEEN + ("add_word",):
        task = preset.task(name, "test")
        for sid in task.ids[:base if name == "add_word" else per_task]:
            requests.append(task.request(sid))
            sources.append(name)
    return requests, sources


def phase(args) -> dict:
    """Runs one path in this process; returns its measurements."""
    from t2lib.core.experts import Expert
    from t2lib.methods.adapters import ExpertAdapters
    from t2lib.methods.transformer2 import Transformer2, question_text
    from t2lib.paths import experts_dir
    from t2lib.presets import get_preset, with_options
    from t2lib.session import Session

    preset = get_preset("tiny", backend="vllm", batch_size=64)
    if args.phase == "adapters":  # the command line's --expert-adapters RANK, with --max-loras
        preset = with_options(preset, expert_adapters=args.rank)
        preset.backend_options["vllm"]["max_loras"] = args.max_loras
    session = Session(preset, progress=False)
    folder = experts_dir("tiny", create=False)
    experts = {c: Expert.load(folder / c) for c in ("math", "code", "reasoning")}
    requests, sources = workload(preset, args.per_task, args.base)
    out = {"engine_start_s": session.backend.start_seconds}
    if args.phase == "in-place":
        t2 = Transformer2(session.svf, session.backend, experts, strategy="cls-expert",
                          cls_expert=Expert.load(folder / "classification"), progress=False, adapters=False)
        labels = t2.dispatch([question_text(r.prompt) for r, s in zip(requests, sources) if s != "add_word"])
        labels += ["base"] * args.base
        out["labels"] = labels
    else:
        labels = json.loads(Path(args.labels).read_text())["labels"]
        served = ExpertAdapters(session.svf.decomp, rank=args.rank, folder=args.scratch)
        # "prompt": labels name experts (`expert_for`); its dispatch is not run, the labels are the in-place run's
        t2 = Transformer2(session.svf, session.backend, experts, strategy="prompt", progress=False, adapters=served)
        start = time.perf_counter()
        for label in dict.fromkeys(labels):
            served.folder_for(t2.expert_for(label))
        out["export_s"] = time.perf_counter() - start
    session.svf.restore()
    session.backend.generate(requests[:1], progress=False)  # warm: nothing pending, engine touched once
    calls, syncs = session.backend.engine_calls, len(session.backend.sync_seconds)
    start = time.perf_counter()
    answers = t2.second_pass(requests, labels, progress=False)
    out.update(wall_s=time.perf_counter() - start, engine_calls=session.backend.engine_calls - calls,
               reload_s=sum(session.backend.sync_seconds[syncs:]),
               tokens=[list(a.token_ids) for a in answers],
               adapters=t2.adapters.report() if t2.adapters else {})
    return out


def run_phase(name: str, args, results: Path, labels: Path | None = None) -> dict:
    """Runs `phase` for `name` in a child process (its own engine) and returns what it measured."""
    command = [sys.executable, __file__, "--phase", name, "--out", str(results), "--rank", str(args.rank),
               "--per-task", str(args.per_task), "--base", str(args.base), "--max-loras", str(args.max_loras),
               "--scratch", str(args.scratch)]
    if labels is not None:
        command += ["--labels", str(labels)]
    subprocess.run(command, check=True)
    return json.loads(results.read_text())


def report(inplace: dict, adapters: dict, sources: list[str]) -> None:
    """Prints the two paths side by side and the agreement of their answers."""
    labels = inplace["labels"]
    print(f"\nmixed batch: {len(labels)} prompts; labels {dict(Counter(labels))}; "
          f"engine start: in-place {inplace['engine_start_s']:.1f} s, adapters {adapters['engine_start_s']:.1f} s; "
          f"adapter export (once per expert) {adapters['export_s']:.1f} s")
    for name, r in (("in-place", inplace), ("adapters", adapters)):
        tokens = sum(map(len, r["tokens"]))
        print(f"  {name:9s} {r['wall_s']:7.2f} s  {tokens / r['wall_s']:7.1f} tok/s  {tokens} tokens  "
              f"engine calls {r['engine_calls']}  weight reloads {r['reload_s']:.2f} s")
    print(f"  adapters / in-place: x{inplace['wall_s'] / adapters['wall_s']:.2f} in wall time "
          f"(>1: the adapter path is faster)")
    for name, r in adapters["adapters"].items():
        print(f"  adapter {name:10s} rank {r['rank']}  energy kept {r['energy_kept']:.4f} (least matrix {r['energy_min']:.4f})")
    same = [a == b for a, b in zip(adapters["tokens"], inplace["tokens"])]
    print(f"  answers equal to the in-place path's: {sum(same)}/{len(same)}")
    for label in dict.fromkeys(labels):
        rows = [i for i, x in enumerate(labels) if x == label]
        print(f"    {label:10s} {sum(same[i] for i in rows)}/{len(rows)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rank", type=int, default=512, help="adapter rank = the engine's max_lora_rank")
    parser.add_argument("--per-task", type=int, default=8, help="prompts of each unseen task")
    parser.add_argument("--base", type=int, default=4, help="add_word prompts answered by the base model")
    parser.add_argument("--max-loras", type=int, default=4, help="distinct adapters per engine step")
    parser.add_argument("--scratch", default=None, help="adapter folder (default: a temporary one)")
    parser.add_argument("--phase", choices=("in-place", "adapters"), help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--labels", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        Path(args.out).write_text(json.dumps(phase(args)))
        return
    with tempfile.TemporaryDirectory(prefix="lora-batch-") as tmp:
        tmp = Path(tmp)
        args.scratch = args.scratch or tmp / "adapters"
        inplace = run_phase("in-place", args, tmp / "in-place.json")
        adapters = run_phase("adapters", args, tmp / "adapters.json", labels=tmp / "in-place.json")
    from t2lib.presets import get_preset

    _, sources = workload(get_preset("tiny"), args.per_task, args.base)
    report(inplace, adapters, sources)


if __name__ == "__main__":
    main()
