"""Suites from a file: your own tasks, trained on and adapted to with no code (docs/own_tasks.md).

    from fishfarm.suites import get_suite
    suite = get_suite("examples/two_skills.yaml")   # read and checked: every error names file, key or row, fix
    suite.training, suite.unseen, suite.source["sha256"]
    task = suite.task("sub_word", "test")

The file names the categories, each with a training task and optionally an unseen task; each task
its data (a local JSONL, CSV or Parquet file, or a hub dataset used when the hub answers), the
fields the scorer reads, a prompt template and a scorer by name (`scorers.SCORERS`). Everything is
checked when the file is read, before any model loads. The classification task is built from the
training tasks' train splits, as for the shipped suites (`fishfarm.suites.classification`).
"""
from __future__ import annotations

from functools import partial
from pathlib import Path

from fishfarm.data.files import file_sha256
from fishfarm.suites.classification import classification_task
from fishfarm.suites.from_file.rows import TaskRows, check_classification, check_overlap, read_task
from fishfarm.suites.from_file.schema import (DISPATCH_CATEGORIES, SuiteFileError, SuiteFileSpec,
                                              parse_suite_file)
from fishfarm.suites.from_file.scorers import SCORERS, labels_for, reference_text
from fishfarm.suites.spec import Suite
from fishfarm.task import Task
from fishfarm.types import Prompt, SamplingParams

SUFFIXES = (".yaml", ".yml")
_CACHE: dict[str, tuple[tuple, Suite]] = {}


def is_suite_file(name: str) -> bool:
    """Returns whether a suite name is a path to a suite file (it ends in .yaml or .yml)."""
    return str(name).endswith(SUFFIXES)


def _prompt(spec, record: dict) -> Prompt:
    values = dict(record)
    if isinstance(record.get("options"), list):  # "{options}" in a template: one lettered line each
        values["options"] = "\n".join(f"{l}. {o}" for l, o in zip(labels_for(record, spec.scorer_options),
                                                                   record["options"]))
    return Prompt.chat(spec.prompt.format(**values), system=spec.system)


def build_task(rows: TaskRows, split: str, max_new_tokens: int | None = None) -> Task:
    """Returns one task of a suite file on one split (unseen tasks have no train split)."""
    spec = rows.spec
    if spec.role == "unseen" and split == "train":
        raise ValueError(f"{spec.name} is an unseen task: it has no train split (use validation or test)")
    if split not in rows.splits:
        raise ValueError(f"unknown split {split!r}; choose train, validation or test")
    return Task(spec.name, rows.splits[split], id_field="id", prompt=partial(_prompt, spec),
                scorer=SCORERS[spec.scorer].make(spec.scorer_options),
                sampling=SamplingParams(max_new_tokens=max_new_tokens or spec.max_new_tokens),
                score_workers=4 if spec.scorer == "code" else 1,
                reference=reference_text(spec.scorer, spec.scorer_options))


def _classification(spec: SuiteFileSpec, tasks: dict[str, TaskRows], split: str, max_new_tokens: int | None) -> Task:
    prompts = {}
    for rows in tasks.values():
        if rows.spec.role == "train":
            prompts[rows.spec.category] = [(r["id"], _prompt(rows.spec, r).messages[-1].content)
                                           for r in rows.splits["train"]]
    test, validation = spec.classification
    return classification_task(prompts, split, seed=f"{spec.name}:{spec.seed}", test=test, validation=validation,
                               max_new_tokens=max_new_tokens or 8)


def _build(spec: SuiteFileSpec, tasks: dict[str, TaskRows], name: str, split: str, max_new_tokens: int | None,
           **options) -> Task:
    if name == "classification":
        return _classification(spec, tasks, split, max_new_tokens)
    return build_task(tasks[name], split, max_new_tokens)


def read_suite_file(path: str | Path) -> Suite:
    """Returns the suite a file describes, after every check (`schema`, `rows`).

    Raises:
        SuiteFileError: the file, a data file or a row is unusable; the message names the file, the
            key (and its line) or the row, and the fix.
    """
    path = Path(path).expanduser().resolve()
    if not path.is_file():
        raise SuiteFileError(f"suite file {path} does not exist; write one (docs/own_tasks.md) or fix the path")
    raw = path.read_bytes()
    spec, loc = parse_suite_file(path, raw, file_sha256(path))
    tasks = {t.name: read_task(loc, t, spec.seed) for t in spec.tasks}
    check_overlap(loc, tasks)
    check_classification(loc, tasks, spec.classification)
    training = {t.category: t.name for t in spec.tasks if t.role == "train"}
    unseen = {t.category: t.name for t in spec.tasks if t.role == "unseen"}
    source = {"file": str(path), "sha256": spec.sha256, "seed": spec.seed,
              "tasks": {name: rows.record for name, rows in tasks.items()}}
    return Suite(spec.name, tuple(training), training, unseen, "classification" if spec.classification else None,
                 partial(_build, spec, tasks), source=source)


def suite_stamp(suite: Suite) -> dict | None:
    """Returns what an expert records of the suite file it was trained on: the suite's name, the file,
    its sha256, and the sha256 of each task's data files (None: a registered suite)."""
    if suite.source is None:
        return None
    data = {task: {split: f["sha256"] for split, f in record.get("files", {}).items()}
            for task, record in suite.source["tasks"].items()}
    return {"name": suite.name, "file": suite.source["file"], "sha256": suite.source["sha256"], "data_sha256": data}


def stamp_mismatch(recorded: dict | None, suite: Suite) -> str | None:
    """Returns why an expert that recorded `recorded` (`suite_stamp` at training) may not be used with
    `suite`, or None when it may: another suite file, or another version of the file or its data."""
    current = suite_stamp(suite)
    if current is None or recorded is None:
        return None if current == recorded else (
            f"it was trained on the {recorded['name']} suite file" if recorded else
            "it was trained on a registered suite, not this suite file")
    if recorded.get("name") != current["name"]:
        return f"it was trained on the suite {recorded.get('name')!r}, not {current['name']!r}"
    if recorded.get("sha256") != current["sha256"]:
        return (f"it was trained on another version of {current['file']} (sha256 {str(recorded.get('sha256'))[:12]}, "
                f"this one {current['sha256'][:12]})")
    if recorded.get("data_sha256") != current["data_sha256"]:
        return f"it was trained on another version of the data files of {current['file']}"
    return None


def _stamp(path: Path, suite: Suite | None) -> tuple:
    """Returns what says a cached suite is current: the file's sha256 and its local data files' sizes and times."""
    files = [] if suite is None else [f["path"] for t in suite.source["tasks"].values() for f in t.get("files", {}).values()]
    stats = tuple((f, Path(f).stat().st_mtime_ns, Path(f).stat().st_size) for f in files if Path(f).exists())
    return file_sha256(path), stats


def load_suite_file(path: str | Path) -> Suite:
    """Returns the suite a file describes, read once per version of the file and its data (`read_suite_file`)."""
    resolved = Path(path).expanduser().resolve()
    cached = _CACHE.get(str(resolved))
    if cached and resolved.is_file() and _stamp(resolved, cached[1]) == cached[0]:
        return cached[1]
    suite = read_suite_file(resolved)
    _CACHE[str(resolved)] = (_stamp(resolved, suite), suite)
    return suite


__all__ = ["DISPATCH_CATEGORIES", "SCORERS", "SuiteFileError", "build_task", "is_suite_file", "load_suite_file",
           "read_suite_file", "stamp_mismatch", "suite_stamp"]
