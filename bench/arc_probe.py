"""Probe: how well the tiny preset's base model answers ARC-Easy, asked several ways.

    .venv/bin/python bench/arc_probe.py            # 120 test questions, ~3 min on 2 cores
    .venv/bin/python bench/arc_probe.py --n 48 --split validation

Why the tiny suite's reasoning task is not ARC (README, "Tasks"): an SVF expert scales what the
model already does, so a task must be one the base model partly solves. This prints the base
model's accuracy on a seeded sample of ARC-Easy questions, greedy:
- letter: the options lettered, "Answer with the letter of the correct option." (the tiny suite's
  ARC prompt until 2026-11-27);
- text: the same, asking to copy the correct option;
- free: the question alone, "Answer in a few words." (read as the one option its text names);
- letter likelihood: the option letter with the highest probability as the answer's first token;
- calibrated: the same after subtracting each letter's mean log-probability over the sample
  (removes the model's preference for one letter; fitted on the sample itself, so optimistic).
Chance is about 25% (most questions have four options).
"""
from __future__ import annotations

import argparse
import random

import torch

from fishfarm.data import load
from fishfarm.data.prompts import arc_user
from fishfarm.scoring import score_choice
from fishfarm.task import Task
from fishfarm.types import SamplingParams
from t2lib.presets import PRESETS, get_preset
from t2lib.session import preset_backend

PROMPTS = {
    "letter": lambda r: f"{arc_user(r)}Answer with the letter of the correct option.",
    "text": lambda r: f"{arc_user(r)}Answer with the correct option, copied exactly.",
    "free": lambda r: f"{r.question}\nAnswer in a few words.",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="tiny", choices=PRESETS)
    parser.add_argument("--split", default="test", choices=("train", "validation", "test"))
    parser.add_argument("--n", type=int, default=120, help="questions (a seeded sample)")
    parser.add_argument("--seed", type=int, default=2025)
    args = parser.parse_args()
    preset = get_preset(args.preset)
    lm = preset.load_model()
    backend = preset_backend(preset, lm, progress=False)
    records = list(load("arc_easy", args.split, source=preset.model_source).records)
    records = random.Random(f"{args.seed}:arc_easy:{args.split}").sample(records, min(args.n, len(records)))
    print(f"ARC-Easy {args.split}, {len(records)} questions, {lm.resolved.path}")

    def task(prompt) -> Task:
        return Task("arc_easy", records, id_field="id", prompt=prompt, sampling=SamplingParams(max_new_tokens=32),
                    scorer=lambda a, r: score_choice(a, r.answer_index, labels=r.labels, options=r.choices))

    for name, prompt in PROMPTS.items():
        result = task(prompt).evaluate(backend)
        print(f"{name:18s} {result.metrics['accuracy']:6.1%}")

    letters = task(PROMPTS["letter"])
    logprobs = backend.next_token_logprobs([letters.request(s).prompt for s in letters.ids])
    width = max(len(r.labels) for r in records)
    letter_ids = [lm.tokenizer.encode(label, add_special_tokens=False)[0] for label in "ABCDE"[:width]]
    scores = logprobs[:, letter_ids]
    calibrated = scores - scores.mean(dim=0, keepdim=True)
    for name, table in (("letter likelihood", scores), ("calibrated", calibrated)):
        right = sum(int(torch.argmax(row[:len(r.labels)])) == r.answer_index for row, r in zip(table, records))
        print(f"{name:18s} {right / len(records):6.1%}")


if __name__ == "__main__":
    main()
