"""Suites from a file (docs/own_tasks.md): the worked example reads and splits as documented, every
bad file is refused before any model loads with the file, the key or row, and the fix, and
nothing is written; experts of another version of the file are refused; the example runs end to
end on smoke."""
import json
from pathlib import Path

import pytest
import yaml

from fishfarm.data.files import read_rows_located
from fishfarm.scoring import score_exact
from fishfarm.suites import get_suite
from fishfarm.suites.from_file import SuiteFileError, read_suite_file, suite_stamp
from t2lib.presets import get_preset, with_options

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "two_skills.yaml"


def rows(prefix: str, n: int, start: int = 0) -> list[dict]:
    return [{"q": f"{prefix} question {i}?", "a": str(i), "names": ["red", "blue"]} for i in range(start, start + n)]


def write_suite(folder: Path, *, math: dict | None = None, unseen: dict | None = None, data: dict | None = None,
                top: dict | None = None) -> Path:
    """Writes a valid two-task suite file (math: a train file, validation drawn, and a test file;
    an unseen test file), with any key replaced, into `folder`; returns its path."""
    files = {"train.jsonl": rows("add", 100), "test.jsonl": rows("add", 20, 100), "unseen.jsonl": rows("sub", 20)}
    files.update(data or {})
    for name, content in files.items():
        (folder / name).write_text("".join(json.dumps(r) + "\n" for r in content))
    train = {"name": "adding", "data": {"train": "train.jsonl", "test": "test.jsonl"}, "splits": {"validation": 20},
             "fields": {"question": "q", "answer": "a"}, "prompt": "{question}\nAnswer with a number.", "scorer": "number"}
    test = {"name": "subtracting", "data": {"test": "unseen.jsonl"}, "fields": {"question": "q", "answer": "a"},
            "scorer": "number"}
    suite = {"name": "mine", "seed": 3, "classification": {"test": 10, "validation": 5},
             "categories": {"math": {"train": {**train, **(math or {})}, "unseen": {**test, **(unseen or {})}}}}
    suite.update(top or {})
    path = folder / "mine.yaml"
    path.write_text(yaml.safe_dump(suite, sort_keys=False))
    return path


def test_the_example_reads_with_disjoint_seeded_splits_recorded():
    suite = get_suite(str(EXAMPLE))
    assert suite.training == {"math": "add_word", "reasoning": "where_person"}
    assert suite.unseen == {"math": "sub_word", "reasoning": "where_crowd"}
    record = suite.source["tasks"]["add_word"]
    assert record["drawn"].endswith("seed 2025") and {s: v["n"] for s, v in record["splits"].items()} == {
        "train": 316, "validation": 48, "test": 60}
    ids = {s: set(suite.task("add_word", s).ids) for s in ("train", "validation", "test")}
    assert not (ids["train"] & ids["test"]) and not (ids["train"] & ids["validation"]) and not (ids["validation"] & ids["test"])
    again = read_suite_file(EXAMPLE)  # read afresh: the same draw
    assert set(again.task("add_word", "test").ids) == ids["test"]
    cls = suite.task("classification", "train")
    assert {cls.record(i)["category"] for i in cls.ids} == {"math", "reasoning"}
    train_questions = {suite.task("add_word", "train").build_prompt(r).messages[-1].content
                       for r in suite.task("add_word", "train").records}
    assert {r["question"] for r in cls.records if r["category"] == "math"} <= train_questions
    with pytest.raises(ValueError, match="no train split"):
        suite.task("sub_word", "train")


def test_a_suite_file_gets_its_own_folders_and_its_sha256_in_run_info(tmp_path, monkeypatch):
    from t2lib.runinfo import run_info

    preset = with_options(get_preset("smoke"), suite=str(EXAMPLE))
    assert preset.folder == "two_skills/smoke" and preset.expert_set == "two_skills/smoke"
    assert get_preset("smoke").folder == "smoke" and get_preset("smoke").expert_set == "tiny"
    assert "--suite" in preset.cli_options
    info = run_info(preset=preset)
    assert info["suite_file"]["sha256"] == suite_stamp(preset.suite_spec)["sha256"] and len(info["suite_file"]["sha256"]) == 64
    assert "suite_file" not in run_info(preset=get_preset("tiny"))
    with pytest.raises(SuiteFileError, match="come with their presets"):  # experts/tiny/ is the tiny preset's
        with_options(get_preset("tiny"), suite="paper")
    named_tiny = write_suite(tmp_path, top={"name": "tiny"})
    with pytest.raises(SuiteFileError, match=r"key name: 'tiny' is a preset's .*Fix: give the suite another name"):
        with_options(get_preset("tiny"), suite=str(named_tiny))


BAD = {  # case -> (changes to write_suite, what the message names)
    "unknown scorer": (dict(math={"scorer": "bleu"}), ["categories.math.train.scorer", "line", "unknown scorer 'bleu'",
                                                       "choose one of number, math, choice, name, code, exact"]),
    "missing field": (dict(math={"fields": {"question": "q", "answer": "answer_text"}}),
                      ["categories.math.train.fields.answer", "train.jsonl:1", "no field 'answer_text'", "Fix: name the column"]),
    "empty split": (dict(data={"unseen.jsonl": []}), ["categories.math.unseen.data", "test split of task 'subtracting' is empty",
                                                      "Fix: add rows"]),
    "train/test overlap": (dict(data={"test.jsonl": rows("add", 19, 100) + rows("add", 1, 5)}),
                           ["train.jsonl:6", "test.jsonl:20", "Fix: remove one of the two rows"]),
    "no training task": (dict(top={"categories": {"math": {"unseen": {"name": "x", "data": "unseen.jsonl", "scorer": "number"}}}}),
                         ["key categories.math (line", "has no training task", "Fix: add `train:`"]),
    "template field": (dict(math={"prompt": "{question}\nUnits: {unit}"}),
                       ["categories.math.train.prompt", "names {unit}", "train.jsonl:1", "Fix: name one of the row's fields"]),
}


@pytest.mark.parametrize("case", list(BAD))
def test_a_bad_file_is_refused_before_any_model_loads_and_nothing_is_written(case, tmp_path, monkeypatch, capsys):
    from t2lib.cli import train

    changes, expected = BAD[case]
    (tmp_path / "data").mkdir()
    path = write_suite(tmp_path / "data", **changes)
    outputs = [tmp_path / name for name in ("figures", "experts", "build")]
    for var, folder in zip(("T2_FIGURES_DIR", "T2_EXPERTS_DIR", "T2_BUILD_DIR"), outputs):
        monkeypatch.setenv(var, str(folder))
    with pytest.raises(SuiteFileError) as err:
        read_suite_file(path)
    message = str(err.value)
    assert message.startswith(str(path)) and all(e in message for e in expected), message
    with pytest.raises(SystemExit) as exit_:  # the command line says the same at parse time, before the model
        train.main(["--preset", "smoke", "--suite", str(path), "--all"])
    assert exit_.value.code == 2 and expected[0] in capsys.readouterr().err
    assert not any(folder.exists() and any(folder.iterdir()) for folder in outputs)


def test_the_good_file_of_those_cases_reads(tmp_path):
    suite = read_suite_file(write_suite(tmp_path))
    assert suite.source["tasks"]["adding"]["splits"]["validation"]["n"] == 20
    assert suite.source["tasks"]["adding"]["drawn"] == "validation drawn from train with seed 3"


def test_an_expert_of_another_version_of_the_file_is_refused_with_the_fix(tmp_path, monkeypatch):
    from t2lib.core.experts import ExpertMismatchError
    from t2lib.runs.expert_sets import check_expert_set

    path = write_suite(tmp_path)
    preset = with_options(get_preset("smoke"), suite=str(path))
    stamp = suite_stamp(preset.suite_spec)
    for name in ("math", "classification"):
        (tmp_path / f"{name}.safetensors").write_bytes(b"")
        (tmp_path / f"{name}.json").write_text(json.dumps({"config": {"suite_file": stamp}}))
    assert check_expert_set(preset, tmp_path, classification=True) == tmp_path  # the same version: accepted
    path.write_text(path.read_text().replace("seed: 3", "seed: 4"))  # another version of the file
    old_version, preset = preset.suite_version, with_options(get_preset("smoke"), suite=str(path))
    assert len(old_version) == 64 and preset.suite_version != old_version  # kept results are keyed by it
    with pytest.raises(ExpertMismatchError, match=r"another version of .*mine.yaml .*Fix: retrain .*--suite .*--all --fresh"):
        check_expert_set(preset, tmp_path)


def test_a_hub_dataset_is_used_when_the_hub_answers_and_its_absence_is_named(tmp_path, monkeypatch):
    from fishfarm.data.hub import HubUnavailableError
    from fishfarm.suites.from_file import rows as rows_module

    hub = {"name": "hubbed", "data": {"hub": "someone/numbers", "config": "main"}, "fields": {"question": "q", "answer": "a"},
           "scorer": "number"}
    path = write_suite(tmp_path, unseen=hub)
    monkeypatch.setattr(rows_module, "hub_split_rows", lambda *a, **k: [
        type("R", (), {"row": r, "where": f"hub row {i}"})() for i, r in enumerate(rows("hub", 5))])
    suite = read_suite_file(path)
    assert suite.source["tasks"]["hubbed"]["source"] == "hub" and len(suite.task("hubbed", "test")) == 5

    def offline(*a, **k):
        raise HubUnavailableError("no network")
    monkeypatch.setattr(rows_module, "hub_split_rows", offline)
    with pytest.raises(SuiteFileError, match=r"categories.math.unseen.data.hub .*does not answer.*Fix: connect"):
        read_suite_file(path)


def test_csv_and_parquet_rows_name_their_line(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "r.csv").write_text("q,a\nwhat?,1\nwho?,2\n")
    got = read_rows_located(tmp_path / "r.csv")
    assert [r.row["a"] for r in got] == ["1", "2"] and got[1].where.endswith("r.csv:3")
    pq.write_table(pa.Table.from_pylist([{"q": "x?", "a": 1}]), tmp_path / "r.parquet")
    assert read_rows_located(tmp_path / "r.parquet")[0].row == {"q": "x?", "a": 1}


def test_exact_match_reads_the_final_answer():
    assert score_exact("Let me think.\nThe answer is Paris.", "paris").correct
    assert not score_exact("Paris", "Lyon").correct
    assert not score_exact("paris", "Paris", case_sensitive=True).correct


def test_a_csv_multiple_choice_task_renders_its_options_and_scores_the_label(tmp_path):
    lines = ["question,options,gold"] + [f"Which is colour {i}?,red|green|blue,{i % 3}" for i in range(40)]
    (tmp_path / "mc.csv").write_text("\n".join(lines) + "\n")
    task = {"name": "colours", "data": "mc.csv", "splits": {"validation": 5, "test": 5},
            "fields": {"answer": "gold"}, "prompt": "{question}\n{options}", "scorer": "choice"}
    (tmp_path / "mc.yaml").write_text(yaml.safe_dump({"name": "mc", "classification": False,
                                                      "categories": {"reasoning": {"train": task}}}))
    suite = read_suite_file(tmp_path / "mc.yaml")
    assert suite.classification is None and suite.unseen == {}
    test = suite.task("colours", "test")
    sid = test.ids[0]
    gold = "ABC"[int(test.record(sid)["gold"])]
    assert test.build_prompt(test.record(sid)).messages[-1].content.endswith("A. red\nB. green\nC. blue")
    assert test.score(sid, f"The answer is ({gold}).").correct and not test.score(sid, "(D)").correct
    assert test.reference_answer(sid) == f"The answer is ({gold})."
