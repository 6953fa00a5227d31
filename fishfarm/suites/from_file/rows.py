"""A suite file's data: each task's rows read, mapped to record roles, split, and checked.

Checks, each naming the file, the key or row, and the fix: the scorer exists and knows its options;
every row has the fields the scorer and the template need; ids are unique; no split a task needs is
empty; no question is in two splits of a task, nor in a training task's train split and an unseen
task's evaluation splits. Splits the data does not bring are drawn with the suite's seed
(`fishfarm.data.splits.carve`: disjoint, the same on every machine) and recorded.
"""
from __future__ import annotations

import hashlib
import json
import string
from dataclasses import dataclass, field
from typing import Any, Mapping

from fishfarm.data.files import LocatedRow, file_sha256, hub_split_rows, read_rows_located
from fishfarm.data.hub import HubUnavailableError
from fishfarm.data.splits import carve
from fishfarm.suites.from_file.schema import Located, SPLITS, TaskSpec
from fishfarm.suites.from_file.scorers import SCORERS, needed_roles


@dataclass
class TaskRows:
    """A task's records per split, where each row came from, and the record of how it was split."""
    spec: TaskSpec
    splits: dict[str, list[dict]] = field(default_factory=dict)
    where: dict[str, str] = field(default_factory=dict)  # sample id -> "file.jsonl:12"
    record: dict[str, Any] = field(default_factory=dict)


def check_scorer(loc: Located, spec: TaskSpec) -> None:
    """Raises unless the task's scorer exists and takes each of its options."""
    if spec.scorer not in SCORERS:
        raise loc.error(f"{spec.key}.scorer", f"unknown scorer {spec.scorer!r}",
                        f"choose one of {', '.join(SCORERS)} (fishfarm/scoring; docs/own_tasks.md)")
    unknown = sorted(set(spec.scorer_options) - SCORERS[spec.scorer].options)
    if unknown:
        allowed = ", ".join(sorted(SCORERS[spec.scorer].options)) or "none"
        raise loc.error(f"{spec.key}.scorer_options.{unknown[0]}",
                        f"the {spec.scorer} scorer has no option {unknown[0]!r}", f"use one of its options: {allowed}")


def _options(value: Any) -> list:
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            return [v.strip() for v in value.split("|")]
        return parsed if isinstance(parsed, list) else [value]
    return list(value)


def to_record(loc: Located, spec: TaskSpec, located: LocatedRow, default_id: str) -> dict:
    """Returns a row as a record: its columns, plus each role under its own name."""
    row = located.row
    required = set(needed_roles(spec.scorer, spec.scorer_options)) | (set(spec.fields) - {"question", "answer"})
    for role in sorted(required):
        column = spec.fields.get(role, role)
        if column not in row or row[column] is None:
            raise loc.error(f"{spec.key}.fields.{role}", f"row {located.where} has no field {column!r} "
                            f"(the {role} the {spec.scorer} scorer or the fields mapping needs)",
                            f"name the column that holds the {role} in fields.{role}; the row has "
                            f"{', '.join(map(str, row)) or 'no fields'}")
    record = dict(row)
    record.update({role: row[column] for role, column in spec.fields.items() if column in row})
    if "options" in record:
        record["options"] = _options(record["options"])
    if isinstance(record.get("tests"), list):  # a list of asserts, as MBPP's test_list
        record["tests"] = "\n".join(map(str, record["tests"]))
    record["id"] = str(record["id"]) if "id" in spec.fields else default_id
    return record


def template_fields(template: str) -> list[str]:
    """Returns the field names a `str.format` template names ("{question}" -> ["question"])."""
    names = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    return [n.split(".")[0].split("[")[0] for n in names]


def check_template(loc: Located, spec: TaskSpec, record: dict, where: str) -> None:
    """Raises when the task's prompt template names a field the record lacks."""
    for name in template_fields(spec.prompt):
        if not name or name not in record:
            key = f"{spec.key}.prompt" if f"{spec.key}.prompt" in loc.lines else "prompt"
            raise loc.error(key, f"the prompt template of task {spec.name!r} names {{{name}}}, which row {where} lacks",
                            f"name one of the row's fields ({', '.join(k for k in record if not k.startswith('_'))}), "
                            "or add the column to the data")


def read_source(loc: Located, spec: TaskSpec) -> tuple[dict[str, list[LocatedRow]], dict[str, Any]]:
    """Returns split ("all": one file) -> rows, from the hub when the task names a dataset and the hub
    answers, else from its local files; and where they came from."""
    data = spec.data
    if data.hub:
        wanted = data.hub_splits or ({"train": "train", "test": "test"} if spec.role == "train" else {"test": "test"})
        try:
            rows = {ours: hub_split_rows(data.hub, theirs, config=data.config, revision=data.revision)
                    for ours, theirs in wanted.items()}
            return rows, {"source": "hub", "dataset": data.hub, "config": data.config, "revision": data.revision}
        except HubUnavailableError as e:
            if not data.files:
                raise loc.error(f"{spec.key}.data.hub", f"the hub does not answer ({e})",
                                "connect to the hub, or add local files beside `hub:` (file: or train:/test:)") from None
    rows = {split: read_rows_located(path) for split, path in data.files.items()}
    files = {split: {"path": str(path), "sha256": file_sha256(path)} for split, path in data.files.items()}
    return rows, {"source": "local", "files": files}


def draw_splits(spec: TaskSpec, records: dict[str, list[dict]], seed: int) -> tuple[dict[str, list[dict]], str]:
    """Returns the task's splits, drawing with `seed` those its data lacks; and a sentence saying what was drawn."""
    def n(split: str, pool: int) -> int:
        size = spec.sizes.get(split, 0)
        return int(size) if size >= 1 or size == 0 else round(size * pool)
    if "all" in records:
        pool = records.pop("all")
        asked = {"test": n("test", len(pool)), "validation": n("validation", len(pool))}
        rest = "train" if spec.role == "train" else None
        if spec.role != "train":
            asked = {"validation": asked["validation"]}
            rest = "test"
        out = carve(pool, asked, seed=seed, rest=rest)
        return {s: out.get(s, []) for s in SPLITS}, f"{', '.join(SPLITS)} drawn from one file with seed {seed}"
    if spec.role == "train" and "validation" not in records and records.get("train"):
        pool = records.pop("train")
        out = carve(pool, {"validation": n("validation", len(pool))}, seed=seed, rest="train")
        records.update(out)
        return {s: records.get(s, []) for s in SPLITS}, f"validation drawn from train with seed {seed}"
    return {s: records.get(s, []) for s in SPLITS}, ""


def _ids_sha256(records: list[dict]) -> str:
    return hashlib.sha256("\n".join(r["id"] for r in records).encode()).hexdigest()


def read_task(loc: Located, spec: TaskSpec, seed: int) -> TaskRows:
    """Returns a task's records per split, every check on its own rows done."""
    check_scorer(loc, spec)
    located, source = read_source(loc, spec)
    out = TaskRows(spec)
    records: dict[str, list[dict]] = {}
    for split, rows in located.items():
        records[split] = []
        for i, row in enumerate(rows):
            record = to_record(loc, spec, row, f"{spec.name}-{i}" if split == "all" else f"{spec.name}-{split}-{i}")
            check_template(loc, spec, record, row.where)
            if record["id"] in out.where:
                raise loc.error(f"{spec.key}.fields.id", f"id {record['id']!r} of row {row.where} is also the id of "
                                f"row {out.where[record['id']]}", "give every row its own id, or leave fields.id out")
            out.where[record["id"]] = row.where
            records[split].append(record)
    try:
        out.splits, drawn = draw_splits(spec, records, seed)
    except ValueError as e:
        raise loc.error(f"{spec.key}.splits", f"the splits of task {spec.name!r} ask for more rows than it has ({e})",
                        "lower splits.validation / splits.test, or add rows") from None
    needed = SPLITS if spec.role == "train" else ("test",)
    for split in needed:
        if not out.splits[split]:
            raise loc.error(f"{spec.key}.data", f"the {split} split of task {spec.name!r} is empty",
                            f"add rows to its data, or raise splits.{split} (an unseen task needs a test split; "
                            "a training task train, validation and test)")
    out.record = {**source, "drawn": drawn,
                  "splits": {s: {"n": len(r), "ids_sha256": _ids_sha256(r)} for s, r in out.splits.items() if r}}
    return out


def _question(record: dict) -> str:
    return " ".join(str(record["question"]).lower().split())


def check_overlap(loc: Located, tasks: Mapping[str, TaskRows]) -> None:
    """Raises when a question is in two splits of a task, or in a training task's train split and in
    an unseen task's validation or test split."""
    def first_shared(a: list[dict], b: list[dict]) -> tuple[dict, dict] | None:
        seen = {_question(r): r for r in a}
        return next(((seen[_question(r)], r) for r in b if _question(r) in seen), None)

    pairs = [(t, sa, t, sb) for t in tasks.values() for sa, sb in (("train", "validation"), ("train", "test"),
                                                                   ("validation", "test"))]
    unseen = [t for t in tasks.values() if t.spec.role == "unseen"]
    pairs += [(t, "train", u, s) for t in tasks.values() if t.spec.role == "train" for u in unseen
              for s in ("validation", "test")]
    for ta, sa, tb, sb in pairs:
        shared = first_shared(ta.splits.get(sa, []), tb.splits.get(sb, []))
        if shared:
            a, b = shared
            raise loc.error(f"{tb.spec.key}.data", f"the question of row {ta.where[a['id']]} ({ta.spec.name} {sa} split) "
                            f"is also row {tb.where[b['id']]} ({tb.spec.name} {sb} split)",
                            "remove one of the two rows: a question the expert trained on, or that picks the best "
                            "checkpoint, must not score it")


def check_classification(loc: Located, tasks: Mapping[str, TaskRows], sizes: tuple[int, int] | None) -> None:
    """Raises when a training task's train split is too small to give the classification task its splits."""
    if sizes is None:
        return
    for t in tasks.values():
        if t.spec.role == "train" and len(t.splits["train"]) <= sum(sizes):
            raise loc.error("classification", f"task {t.spec.name!r} has {len(t.splits['train'])} train rows; the "
                            f"classification task takes {sizes[0]} test and {sizes[1]} validation questions per "
                            "category from them and needs some left to train on",
                            "add rows, lower classification.test / classification.validation, or write "
                            "`classification: false`")
