"""Every notebook executes headlessly with papermill on the smoke preset, and is stored clean."""
import json

import nbformat
import pytest

from t2lib.notebooks import NOTEBOOKS_DIR, list_notebooks, run_notebook

NOTEBOOKS = list_notebooks()


def test_there_are_notebooks():
    assert any(p.name.startswith("01_") for p in NOTEBOOKS)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_stored_without_outputs_and_with_four_parts(path):
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, f"{path.name}: strip outputs"
    assert nb.cells[0].cell_type == "markdown" and "preset" in nb.cells[0].source.lower()
    params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1 and 'PRESET = "tiny"' in params[0].source
    assert "write_results" in nb.cells[-1].source or "write_outputs" in nb.cells[-1].source


@pytest.mark.notebooks
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_executes_on_smoke_preset(path, tmp_path, monkeypatch):
    figures = tmp_path / "figures"
    monkeypatch.setenv("T2_FIGURES_DIR", str(figures))
    monkeypatch.setenv("T2_BUILD_DIR", str(tmp_path / "build"))
    executed = run_notebook(path, tmp_path / "executed", parameters={"PRESET": "smoke"}, progress=False)
    nb = nbformat.read(executed, as_version=4)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    results = sorted(figures.glob("nb*.json"))
    assert results, "the notebook wrote no results JSON"
    run = json.loads(results[0].read_text())["run"]
    assert run["preset"]["name"] == "smoke" and run["git_revision"] and run["versions"]["torch"]
    assert list(figures.glob("*.png")), "the notebook wrote no figures"
    assert path.parent == NOTEBOOKS_DIR
