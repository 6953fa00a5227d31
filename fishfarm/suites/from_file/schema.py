"""The suite file's schema: YAML read into typed specs, every key checked, every error located.

    name: two_skills                 # experts/<name>/<preset>/, figures/<name>/<preset>/
    seed: 2025                       # the seed of every split drawn from a file
    prompt: "{question}"             # the suite's default prompt (a chat user message)
    classification: {test: 40, validation: 16}    # or false: no classification task
    categories:
      math:                          # code | math | reasoning (the dispatch prompt's categories)
        train:                       # required: the task its expert learns
          name: add_word
          data: add_word.jsonl       # one file (splits drawn), {train: ..., test: ...}, or a hub dataset
          fields: {question: question, answer: answer}
          scorer: number             # number | math | choice | name | code | exact
        unseen:                      # optional: the task adaptation is tested on
          ...

docs/own_tasks.md has every key; `TASK_KEYS` and `SUITE_KEYS` below are the check.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from fishfarm.data.prompts import CLS_CATEGORIES

DISPATCH_CATEGORIES = tuple(c for c in CLS_CATEGORIES if c != "other")
SUITE_KEYS = {"name", "description", "seed", "prompt", "system", "classification", "categories"}
CATEGORY_KEYS = {"train", "unseen"}
TASK_KEYS = {"name", "data", "fields", "prompt", "system", "scorer", "scorer_options", "max_new_tokens", "splits"}
DATA_KEYS = {"file", "train", "validation", "test", "hub", "config", "revision", "hub_splits"}
ROLES = ("id", "question", "answer", "options", "tests", "entry_point", "reference")
SPLITS = ("train", "validation", "test")


class SuiteFileError(ValueError):
    """Raised for a suite file that cannot be used: names the file, the key or line, and the fix."""


@dataclass(frozen=True)
class Located:
    """Where keys are in a suite file: key path ("categories.math.train.scorer") -> line (1-based)."""
    path: Path
    lines: Mapping[str, int]

    def at(self, key: str) -> str:
        """Returns "key K (line N)", the nearest enclosing key's line when K itself is absent."""
        probe = key
        while probe and probe not in self.lines:
            probe = probe.rpartition(".")[0]
        return f"key {key}" + (f" (line {self.lines[probe]})" if probe else "")

    def error(self, key: str, problem: str, fix: str) -> SuiteFileError:
        """Returns the error for a problem at `key`, with its fix."""
        return SuiteFileError(f"{self.path}: {self.at(key)}: {problem}. Fix: {fix}")


@dataclass(frozen=True)
class DataSpec:
    """Where a task's rows come from: local files, and a hub dataset used when the hub answers.

    Args:
        files: split ("train" | "validation" | "test", or "all": one file, splits drawn) -> path.
        hub: a hub dataset id ("openai/gsm8k"), None: local files only.
        config: the hub dataset's configuration ("main").
        revision: its branch, tag or commit.
        hub_splits: our split -> the hub's split name (default: the same names).
    """
    files: Mapping[str, Path]
    hub: str | None = None
    config: str | None = None
    revision: str | None = None
    hub_splits: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class TaskSpec:
    """One task of a suite file.

    Args:
        name: task name (unique in the suite).
        category: its category.
        role: "train" (an expert learns it) or "unseen" (adaptation is tested on it).
        key: its key path in the file ("categories.math.train"), for messages.
        data: where its rows come from.
        fields: role ("id", "question", "answer", "options", "tests", "entry_point", "reference") -> column.
        prompt: the prompt template, `str.format` fields naming columns or roles.
        system: a system message, or None.
        scorer: a name in `fishfarm.suites.from_file.scorers.SCORERS`.
        scorer_options: the scorer's keyword options.
        max_new_tokens: answer budget (greedy).
        sizes: split -> rows drawn for it when the data does not bring it (an int, or a fraction < 1).
    """
    name: str
    category: str
    role: str
    key: str
    data: DataSpec
    fields: Mapping[str, str]
    prompt: str
    system: str | None
    scorer: str
    scorer_options: Mapping[str, Any]
    max_new_tokens: int
    sizes: Mapping[str, float]


@dataclass(frozen=True)
class SuiteFileSpec:
    """A suite file, parsed and checked for form (its data is checked by `rows`).

    Args:
        name: the suite's name (its folders are named after it).
        path: the file.
        sha256: the sha256 of the file's bytes.
        seed: the seed of the splits drawn from files.
        tasks: every task, training tasks first, in file order.
        classification: (test, validation) questions per category of the classification task; None: none.
        description: free text.
    """
    name: str
    path: Path
    sha256: str
    seed: int
    tasks: tuple[TaskSpec, ...]
    classification: tuple[int, int] | None
    description: str = ""


def key_lines(text: str) -> dict[str, int]:
    """Returns key path -> line (1-based) of every mapping key in a YAML document."""
    lines: dict[str, int] = {}

    def walk(node, prefix: str) -> None:
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                path = f"{prefix}.{k.value}" if prefix else str(k.value)
                lines[path] = k.start_mark.line + 1
                walk(v, path)
    walk(yaml.compose(text, Loader=yaml.SafeLoader), "")
    return lines


def read_yaml(path: Path, text: str) -> tuple[dict, Located]:
    """Returns the file's top mapping and where its keys are; a YAML error names its line."""
    try:
        data, lines = yaml.safe_load(text), key_lines(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "somewhere"
        raise SuiteFileError(f"{path}: {where}: not valid YAML ({getattr(e, 'problem', e)}). Fix: the YAML "
                             "syntax there (indentation, a missing colon or quote)") from None
    loc = Located(path, lines)
    if not isinstance(data, dict):
        raise SuiteFileError(f"{path}: the file must hold a mapping with keys name and categories. Fix: start "
                             "from examples/two_skills.yaml")
    return data, loc


def check_keys(loc: Located, key: str, value: Any, allowed: set[str]) -> dict:
    """Returns `value` after checking it is a mapping whose keys are all in `allowed`."""
    if not isinstance(value, dict):
        raise loc.error(key or "(top)", f"expected a mapping, got {type(value).__name__}",
                        f"write the keys {', '.join(sorted(allowed))} under it")
    unknown = sorted(set(map(str, value)) - allowed)
    if unknown:
        raise loc.error(f"{key}.{unknown[0]}" if key else unknown[0], f"unknown key {unknown[0]!r}",
                        f"use one of {', '.join(sorted(allowed))} (docs/own_tasks.md)")
    return value


def _text(loc: Located, key: str, value: Any, *, required: bool = True) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise loc.error(key, f"expected a non-empty text, got {value!r}", f"give {key.rpartition('.')[2]} a text value")
    return value


def parse_data(loc: Located, key: str, value: Any) -> DataSpec:
    """Returns the data spec at `key`: a path (one file), or a mapping of DATA_KEYS."""
    base = loc.path.parent
    if isinstance(value, str):
        return DataSpec({"all": base / value})
    value = check_keys(loc, key, value, DATA_KEYS)
    files = {("all" if k == "file" else k): base / _text(loc, f"{key}.{k}", v)
             for k, v in value.items() if k in ("file", *SPLITS)}
    if "all" in files and len(files) > 1:
        raise loc.error(f"{key}.file", "both one file and files per split",
                        "give either `file:` (splits are drawn from it) or `train:`/`validation:`/`test:`")
    hub = _text(loc, f"{key}.hub", value.get("hub"), required=False)
    if not files and not hub:
        raise loc.error(key, "no data", "name a local file (`data: rows.jsonl`) or a hub dataset (`hub: owner/name`)")
    splits = value.get("hub_splits") or {}
    check_keys(loc, f"{key}.hub_splits", splits, set(SPLITS))
    return DataSpec(files, hub, _text(loc, f"{key}.config", value.get("config"), required=False),
                    _text(loc, f"{key}.revision", value.get("revision"), required=False), dict(splits))


def _sizes(loc: Located, key: str, value: Any) -> dict[str, float]:
    sizes = check_keys(loc, key, value or {}, set(SPLITS) - {"train"})
    for split, n in sizes.items():
        if isinstance(n, bool) or not isinstance(n, (int, float)) or n < 0 or (isinstance(n, float) and n >= 1):
            raise loc.error(f"{key}.{split}", f"{n!r} is not a row count or a fraction below 1",
                            "give a whole number of rows (48) or a share of the file (0.2)")
    return sizes


def parse_task(loc: Located, key: str, value: Any, *, category: str, role: str, defaults: Mapping) -> TaskSpec:
    """Returns the task at `key` ("categories.<category>.<role>")."""
    value = check_keys(loc, key, value, TASK_KEYS)
    for needed in ("name", "data", "scorer"):
        if needed not in value:
            raise loc.error(f"{key}.{needed}", f"the task has no {needed}", f"add `{needed}:` under {key}")
    fields = check_keys(loc, f"{key}.fields", value.get("fields") or {}, set(ROLES))
    fields = {"question": "question", "answer": "answer", **{k: _text(loc, f"{key}.fields.{k}", v) for k, v in fields.items()}}
    options = value.get("scorer_options") or {}
    if not isinstance(options, dict):
        raise loc.error(f"{key}.scorer_options", "expected a mapping", "write the scorer's options as `name: value` lines")
    budget = value.get("max_new_tokens", 64)
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
        raise loc.error(f"{key}.max_new_tokens", f"{budget!r} is not a positive whole number", "give the answer budget in tokens, e.g. 48")
    # One file: a training task keeps 15% for validation and 25% for test; an unseen task is all test.
    default_sizes = {"validation": 0.15, "test": 0.25} if role == "train" else {"validation": 0}
    return TaskSpec(_text(loc, f"{key}.name", value["name"]), category, role, key,
                    parse_data(loc, f"{key}.data", value["data"]), fields,
                    _text(loc, f"{key}.prompt", value.get("prompt", defaults["prompt"])),
                    _text(loc, f"{key}.system", value.get("system", defaults["system"]), required=False),
                    _text(loc, f"{key}.scorer", value["scorer"]), options, budget,
                    {**default_sizes, **_sizes(loc, f"{key}.splits", value.get("splits"))})


def _classification(loc: Located, value: Any) -> tuple[int, int] | None:
    if value is False:
        return None
    sizes = check_keys(loc, "classification", {} if value in (None, True) else value, {"test", "validation"})
    out = (sizes.get("test", 40), sizes.get("validation", 16))
    if any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in out):
        raise loc.error("classification", f"sizes {out} are not positive whole numbers",
                        "give questions per category, e.g. {test: 40, validation: 16}, or `false` for no classification task")
    return out


def parse_categories(loc: Located, value: Any, defaults: Mapping) -> tuple[TaskSpec, ...]:
    """Returns every task of the `categories` mapping, training tasks first."""
    if not isinstance(value, dict) or not value:
        raise loc.error("categories", "no categories", "add `categories:` with at least one category and its `train:` task")
    train, unseen = [], []
    for category, tasks in value.items():
        key = f"categories.{category}"
        if category not in DISPATCH_CATEGORIES:
            raise loc.error(key, f"category {category!r} is not one the dispatch prompt knows",
                            f"name each category {' , '.join(DISPATCH_CATEGORIES)} after the kind of question it "
                            "holds (the paper's classification prompt, §3.2, routes to these)")
        tasks = check_keys(loc, key, tasks, CATEGORY_KEYS)
        if "train" not in tasks:
            raise loc.error(key, f"category {category!r} has no training task",
                            f"add `train:` under {key}: the task its expert learns (an unseen task alone trains nothing)")
        train.append(parse_task(loc, f"{key}.train", tasks["train"], category=category, role="train", defaults=defaults))
        if tasks.get("unseen") is not None:
            unseen.append(parse_task(loc, f"{key}.unseen", tasks["unseen"], category=category, role="unseen",
                                     defaults=defaults))
    return (*train, *unseen)


def parse_suite_file(path: Path, raw: bytes, sha256: str) -> tuple[SuiteFileSpec, Located]:
    """Returns the suite file's spec, every key checked (its data is read and checked by `rows`), and
    where its keys are."""
    data, loc = read_yaml(path, raw.decode("utf-8"))
    check_keys(loc, "", data, SUITE_KEYS)
    name = _text(loc, "name", data.get("name", path.stem))
    if not name.replace("_", "").replace("-", "").isalnum() or not name[0].isalnum():
        raise loc.error("name", f"{name!r} cannot name a folder", "use letters, digits, - and _ (e.g. my_tasks)")
    seed = data.get("seed", 2025)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise loc.error("seed", f"{seed!r} is not a whole number", "give the split seed as an integer, e.g. 2025")
    defaults = {"prompt": _text(loc, "prompt", data.get("prompt", "{question}")),
                "system": _text(loc, "system", data.get("system"), required=False)}
    tasks = parse_categories(loc, data.get("categories"), defaults)
    names = [t.name for t in tasks]
    for t in tasks:
        if names.count(t.name) > 1 or t.name == "classification":
            raise loc.error(f"{t.key}.name", f"task name {t.name!r} is used twice (or is reserved)",
                            "give every task its own name (\"classification\" is the dispatch task's)")
    return SuiteFileSpec(name, path, sha256, seed, tasks, _classification(loc, data.get("classification")),
                         str(data.get("description") or "")), loc
