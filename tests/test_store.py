"""The one store of kept results: found by name and inputs, refused across versions, atomic."""
import json

from t2lib.runs.store import ResultStore


def test_a_kept_result_is_found_only_for_the_same_inputs_and_version(tmp_path, monkeypatch):
    monkeypatch.setenv("T2_BUILD_DIR", str(tmp_path))
    store = ResultStore("adapt", "tiny", version=2)
    calls = []
    result, kept = store.fetch("math-prompt", {"preset": 1}, lambda: calls.append(1) or {"acc": 0.5})
    assert (result, kept) == ({"acc": 0.5}, False) and store.path("math-prompt", {"preset": 1}).parent == tmp_path / "adapt" / "tiny"
    assert store.fetch("math-prompt", {"preset": 1}, lambda: calls.append(1) or {"acc": 0.9}) == ({"acc": 0.5}, True)
    assert store.fetch("math-prompt", {"preset": 2}, lambda: calls.append(1) or {"acc": 0.7})[0] == {"acc": 0.7}
    assert store.fetch("math-prompt", {"preset": 1}, lambda: calls.append(1) or {"acc": 0.8}, fresh=True)[0] == {"acc": 0.8}
    assert len(calls) == 3
    assert ResultStore("adapt", "tiny", version=3).get("math-prompt", {"preset": 1}) is None  # another version
    path = store.path("math-prompt", {"preset": 1})
    record = json.loads(path.read_text())
    record["version"] = 1  # written by an older kit under the same key
    path.write_text(json.dumps(record))
    assert store.get("math-prompt", {"preset": 1}) is None
    assert not [p for p in tmp_path.rglob(".*.json*") if p.suffix != ".lock"]  # no temporary file left behind
