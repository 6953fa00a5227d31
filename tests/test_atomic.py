import json

import pytest

from t2lib.atomic import append_jsonl, atomic_path, atomic_write_json
from t2lib.runinfo import write_results


def test_a_failed_write_leaves_the_old_file(tmp_path):
    target = tmp_path / "expert.json"
    atomic_write_json(target, {"v": 1})
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(target) as tmp:
            tmp.write_text('{"v": 2, "trunc')
            raise KeyboardInterrupt  # Ctrl-C in the middle of a write
    assert json.loads(target.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["expert.json"]  # no temporary left behind


def test_jsonl_appends_lines(tmp_path):
    for i in range(3):
        append_jsonl(tmp_path / "m.jsonl", {"step": i})
    assert [json.loads(x)["step"] for x in (tmp_path / "m.jsonl").read_text().splitlines()] == [0, 1, 2]


def test_results_carry_run_info(tmp_path):
    path = write_results(tmp_path / "r.json", {"acc": 0.5}, preset={"name": "smoke"}, config={"seed": 1})
    data = json.loads(path.read_text())
    assert data["results"] == {"acc": 0.5}
    run = data["run"]
    assert run["preset"] == {"name": "smoke"} and run["config"] == {"seed": 1}
    assert run["versions"]["torch"] and run["device"].startswith(("cpu", "cuda")) and run["git_revision"]


def test_csv_rows_missing_a_column_are_refused_and_the_file_is_kept(tmp_path):
    from t2lib.atomic import atomic_write_csv
    path = tmp_path / "table.csv"
    atomic_write_csv(path, [{"a": 1, "b": 2, "extra": 3}], ["a", "b"])
    assert path.read_text().splitlines() == ["a,b", "1,2"]
    with pytest.raises(ValueError, match=r"row 1 .* has no \['b'\]"):
        atomic_write_csv(path, [{"a": 4, "b": 5}, {"a": 6, "bb": 7}], ["a", "b"])
    assert path.read_text().splitlines() == ["a,b", "1,2"]
