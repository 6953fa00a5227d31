"""The book and the front door: the executed copies in docs/notebooks/ match the source notebooks
and the committed results, every docs page is reachable, the README stays short, and every
notebook's first cell says how to get the kit where t2lib is missing. No model, no browser
(`make book-check` is the browser check)."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from t2lib.paths import FIGURES_DIR, REPO_ROOT
from t2lib.runs.notebooks import BOOK_NOTEBOOKS_DIR, BOOK_PRESET, code_cells, list_notebooks, stale_book_copies

SOURCES = list_notebooks()
DOCS = REPO_ROOT / "docs"
REFRESH = "run `make book-notebooks` (or `make reproduce`, which refreshes them on tiny)"


def executed(source: Path, folder: Path, *, outputs: list | None = None) -> Path:
    """Writes what papermill makes of `source` into `folder`: its injected parameters cell after the
    parameters cell, and outputs in every code cell."""
    nb = json.loads(source.read_text())
    at = next(i for i, c in enumerate(nb["cells"]) if "parameters" in c["metadata"].get("tags", []))
    nb["cells"].insert(at + 1, {"cell_type": "code", "id": "injected", "execution_count": None, "outputs": [],
                                "metadata": {"tags": ["injected-parameters"]}, "source": ['PRESET = "tiny"\n']})
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            cell["outputs"] = outputs if outputs is not None else [{"output_type": "stream", "name": "stdout", "text": ["ok\n"]}]
    (folder / source.name).write_text(json.dumps(nb, indent=1, ensure_ascii=False))
    return folder / source.name


def printed(path: Path) -> str:
    """Returns everything a notebook printed (its stream outputs), in order."""
    cells = json.loads(Path(path).read_text())["cells"]
    return "".join("".join(o.get("text", "")) for c in cells if c["cell_type"] == "code"
                   for o in c.get("outputs", []) if o["output_type"] == "stream")


def check_nb02(copy: Path, results: Path) -> None:
    """Asserts that notebook 02's printed test accuracies are the ones its results JSON records."""
    m = re.search(r"test accuracy: base ([\d.]+)% -> expert ([\d.]+)% \(([+-][\d.]+) points, n=(\d+)\); "
                  r"best step (\d+)", printed(copy))
    assert m, f"{copy.name} printed no test accuracy line"
    row = json.loads(results.read_text())["results"]["table1_row"]
    assert float(m[1]) == pytest.approx(100 * row["base_accuracy"], abs=0.051), (m[0], results)
    assert float(m[2]) == pytest.approx(100 * row["expert_accuracy"], abs=0.051), (m[0], results)
    assert float(m[3]) == pytest.approx(row["gain_points"], abs=0.051) and int(m[4]) == row["n"]
    assert int(m[5]) == row["best_step"], (m[0], results)


def check_nb01(copy: Path, results: Path) -> None:
    """Asserts that notebook 01's printed spectrum summary is the one its results JSON records."""
    rows = {r["module"]: r for r in json.loads(results.read_text())["results"]["spectrum_by_module"]}
    lines = re.findall(r"^(\S+)\s+r=\s*(\d+)\s+top-10% energy=([\d.]+)", printed(copy), re.M)
    assert lines, f"{copy.name} printed no spectrum summary"
    for module, rank, energy in lines:
        assert float(energy) == pytest.approx(rows[module]["energy_top0.1"], abs=0.0051), (module, results)


def check_nb10(copy: Path, results: Path) -> None:
    """Asserts that notebook 10's printed Table 1 and adaptation rows are those of the example's
    committed tables (figures/two_skills/tiny/)."""
    text, saved = printed(copy), json.loads(results.read_text())["results"]
    table1 = re.findall(r"^(\S+)\s+(\S+)\s+test n=(\d+): base ([\d.]+)% -> expert ([\d.]+)%", text, re.M)
    assert {(e, t) for e, t, *_ in table1} == {(r["expert"], r["task"]) for r in saved["table1"]}, copy
    rows = {r["expert"]: r for r in saved["table1"]}
    for expert, _, n, base, tuned in table1:
        assert int(n) == int(rows[expert]["n"]) and float(base) == pytest.approx(100 * float(rows[expert]["base_accuracy"]), abs=0.051)
        assert float(tuned) == pytest.approx(100 * float(rows[expert]["expert_accuracy"]), abs=0.051), (expert, results)
    adapted = re.findall(r"^(\S+)\s+(\S+)\s+n=\s*(\d+)\s+accuracy\s+([\d.]+)%", text, re.M)
    assert len(adapted) == len(saved["adaptation"]) > 0, copy
    for (task, strategy, n, accuracy), row in zip(adapted, saved["adaptation"]):
        assert (task, strategy, int(n)) == (row["task"], row["strategy"], row["n"]), copy
        assert float(accuracy) == pytest.approx(100 * row["accuracy"], abs=0.051), (task, strategy, results)


# -- the executed copies -----------------------------------------------------------------------

def test_every_notebook_has_a_fresh_executed_copy():
    stale = stale_book_copies()
    assert not stale, (f"docs/notebooks/ lacks or has stale executed copies of {[p.name for p in stale]}: {REFRESH}")


def test_a_changed_source_cell_or_a_missing_copy_is_caught(tmp_path):
    sources, copies = tmp_path / "notebooks", tmp_path / "copies"
    sources.mkdir(), copies.mkdir()
    for nb in SOURCES[:2]:
        shutil.copy(nb, sources / nb.name)
        executed(nb, copies)
    assert stale_book_copies(copies, sources=sources) == []  # papermill's injected cell is ignored
    first = sources / SOURCES[0].name
    nb = json.loads(first.read_text())
    cell = next(c for c in reversed(nb["cells"]) if c["cell_type"] == "code")
    cell["source"] = ["".join(cell["source"]) + "\nprint('one more line')"]
    first.write_text(json.dumps(nb))
    assert stale_book_copies(copies, sources=sources) == [first]
    (copies / SOURCES[1].name).unlink()
    assert stale_book_copies(copies, sources=sources) == [first, sources / SOURCES[1].name]


def test_code_cells_leave_out_only_the_injected_parameters(tmp_path):
    copy = executed(SOURCES[1], tmp_path)
    assert code_cells(copy) == code_cells(SOURCES[1])
    assert len(code_cells(copy)) == len(json.loads(copy.read_text())["cells"]) - 1 - sum(
        c["cell_type"] == "markdown" for c in json.loads(copy.read_text())["cells"])


def test_refresh_executes_only_the_missing_and_stale_copies(tmp_path, monkeypatch):
    from t2lib.runs import notebooks

    copies = tmp_path / "copies"
    copies.mkdir()
    for nb in SOURCES:
        executed(nb, copies)
    missing, changed = SOURCES[0], SOURCES[2]
    (copies / missing.name).unlink()
    stale = json.loads((copies / changed.name).read_text())
    next(c for c in stale["cells"] if c["cell_type"] == "code")["source"] = ["# an older first cell\n"]
    (copies / changed.name).write_text(json.dumps(stale))
    ran = []

    def fake_run(path, out_dir, *, parameters, progress=True):
        ran.append((path.name, parameters))
        out_dir.mkdir(parents=True, exist_ok=True)
        return executed(path, out_dir)

    monkeypatch.setenv("T2_BUILD_DIR", str(tmp_path / "build"))
    monkeypatch.setattr(notebooks, "run_notebook", fake_run)
    done = notebooks.refresh_book_copies(folder=copies, progress=False)
    assert ran == [(missing.name, {"PRESET": "tiny"}), (changed.name, {"PRESET": "tiny"})]
    assert done == [copies / missing.name, copies / changed.name] and stale_book_copies(copies) == []

    def failing_run(path, out_dir, **kwargs):
        raise RuntimeError("the notebook failed")

    before = (copies / changed.name).read_bytes()
    monkeypatch.setattr(notebooks, "run_notebook", failing_run)
    with pytest.raises(RuntimeError):
        notebooks.refresh_book_copies(folder=copies, every=True, progress=False)
    assert (copies / changed.name).read_bytes() == before  # a failed run leaves the old copy
    assert sorted(p.name for p in copies.iterdir()) == sorted(p.name for p in SOURCES)  # no temporary files left


@pytest.mark.parametrize("source", SOURCES, ids=[p.stem for p in SOURCES])
def test_executed_copy_ran_on_the_tiny_preset_without_errors(source):
    copy = BOOK_NOTEBOOKS_DIR / source.name
    assert copy.is_file(), f"no executed copy of {source.name} in docs/notebooks/: {REFRESH}"
    nb = json.loads(copy.read_text())
    assert nb["metadata"].get("papermill", {}).get("parameters", {}).get("PRESET") == BOOK_PRESET, copy
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert sum(bool(c["outputs"]) for c in code) >= len(code) // 2, f"{copy.name} has few outputs: {REFRESH}"
    errors = [o for c in code for o in c["outputs"] if o["output_type"] == "error"]
    assert not errors, f"{copy.name} stopped with {errors[0]['ename']}: {REFRESH}"


def test_executed_copies_print_the_committed_results():
    for name, check, results in (("02_", check_nb02, "nb02_train_expert.json"),
                                 ("01_", check_nb01, "nb01_svd_inspection.json"),
                                 ("10_", check_nb10, "two_skills/tiny/nb10_your_own_experts.json")):
        source = next(p for p in SOURCES if p.name.startswith(name))
        copy = BOOK_NOTEBOOKS_DIR / source.name
        assert copy.is_file(), f"no executed copy of {source.name} in docs/notebooks/: {REFRESH}"
        check(copy, FIGURES_DIR / results)


def test_the_value_checks_catch_a_copy_from_another_run(tmp_path):
    results = json.loads((FIGURES_DIR / "nb02_train_expert.json").read_text())
    row = results["results"]["table1_row"]
    line = (f"test accuracy: base {row['base_accuracy']:.1%} -> expert {row['expert_accuracy']:.1%} "
            f"({row['gain_points']:+.1f} points, n={row['n']}); best step {row['best_step']}, trained in 9 s\n")
    source = next(p for p in SOURCES if p.name.startswith("02_"))
    copy = executed(source, tmp_path, outputs=[{"output_type": "stream", "name": "stdout", "text": [line]}])
    check_nb02(copy, FIGURES_DIR / "nb02_train_expert.json")
    row["expert_accuracy"] += 0.025  # three more questions right in the committed results
    (tmp_path / "other.json").write_text(json.dumps(results))
    with pytest.raises(AssertionError):
        check_nb02(copy, tmp_path / "other.json")
    spectrum = json.loads((FIGURES_DIR / "nb01_svd_inspection.json").read_text())["results"]["spectrum_by_module"]
    source = next(p for p in SOURCES if p.name.startswith("01_"))
    for shift, passes in ((0.0, True), (0.05, False)):
        text = "".join(f"{r['module']:18s} r={r['rank']:5d}  top-10% energy={r['energy_top0.1'] + shift:.2f}  rest\n"
                       for r in spectrum)
        copy = executed(source, tmp_path, outputs=[{"output_type": "stream", "name": "stdout", "text": [text]}])
        if passes:
            check_nb01(copy, FIGURES_DIR / "nb01_svd_inspection.json")
        else:
            with pytest.raises(AssertionError):
                check_nb01(copy, FIGURES_DIR / "nb01_svd_inspection.json")
    ten = next(p for p in SOURCES if p.name.startswith("10_"))
    own = json.loads((FIGURES_DIR / "two_skills" / "tiny" / "nb10_your_own_experts.json").read_text())
    check_nb10(BOOK_NOTEBOOKS_DIR / ten.name, FIGURES_DIR / "two_skills" / "tiny" / "nb10_your_own_experts.json")
    own["results"]["adaptation"][-1]["accuracy"] += 0.02  # one more question right in the committed results
    (tmp_path / "own.json").write_text(json.dumps(own))
    with pytest.raises(AssertionError):
        check_nb10(BOOK_NOTEBOOKS_DIR / ten.name, tmp_path / "own.json")


def test_the_book_build_names_the_missing_copies():
    sys.path.insert(0, str(DOCS))
    try:
        import conf
    finally:
        sys.path.remove(str(DOCS))
    expected = sorted(p.name for p in SOURCES if not (BOOK_NOTEBOOKS_DIR / p.name).is_file())
    assert conf.missing_copies() == expected
    message = conf.missing_message()
    assert (message is None) == (not expected)
    if expected:
        assert "make book-notebooks" in message and all(name in message for name in expected)


# -- the front door and the pages --------------------------------------------------------------

def test_the_readme_is_a_front_door():
    readme = (REPO_ROOT / "README.md").read_text()
    lines = readme.splitlines()
    assert len(lines) <= 220, f"README.md has {len(lines)} lines: move sections to docs/"
    first_screen = "\n".join(lines[:60])
    assert "make reproduce" in first_screen and "make test" in first_screen
    assert "figures/fig06_table2_gains.png" in "\n".join(lines[:30])
    for target in re.findall(r"\]\(((?:docs|figures|notebooks)/[^)#\s]+)", readme):
        assert (REPO_ROOT / target).exists(), f"README.md links {target}, which does not exist"
    for nb in SOURCES:
        assert f"docs/notebooks/{nb.name}" in readme, f"README.md's notebook table lacks a link to {nb.name}'s page"


def test_every_docs_page_is_reachable_from_the_readme_or_the_book_index():
    readme = (REPO_ROOT / "README.md").read_text()
    index = (DOCS / "index.md").read_text()
    toctrees = re.findall(r"```\{toctree\}\n(.*?)```", index, re.S)
    listed = {line.strip() for t in toctrees for line in t.splitlines() if line.strip() and not line.startswith(":")}
    globbed = any(":glob:" in t and "\n*\n" in f"\n{t}" for t in toctrees)
    assert globbed, "docs/index.md needs a glob toctree (`*`) so every page in docs/ appears in the book"
    for page in sorted(DOCS.glob("*.md")):
        if page.name == "index.md":
            continue
        assert f"docs/{page.name}" in readme or page.stem in listed or globbed, f"{page.name} is reachable from nowhere"
    for page in sorted(listed - {"*", "notebooks/*"}):
        assert (DOCS / f"{page}.md").is_file(), f"docs/index.md lists {page}, which does not exist"


# -- opened outside the repository -------------------------------------------------------------

def first_code_cell(path: Path) -> str:
    return next("".join(c["source"]) for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code")


def test_every_notebook_starts_with_the_same_get_the_kit_cell():
    cells = {p.name: first_code_cell(p) for p in SOURCES}
    assert len(set(cells.values())) == 1, "the first code cells differ: copy notebooks/01's into the others"
    cell = cells[SOURCES[0].name]
    assert 'find_spec("t2lib") is None' in cell and "import t2lib" not in cell and "from t2lib" not in cell
    for path in SOURCES:  # the book leaves it out (MyST-NB's remove-cell); Jupyter shows and runs it
        first = next(c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code")
        assert "remove-cell" in first["metadata"].get("tags", []), path.name


def test_the_first_cell_says_how_to_get_the_kit_where_t2lib_is_missing(tmp_path):
    # -S -I: no site-packages and not this folder, so t2lib cannot be imported.
    run = subprocess.run([sys.executable, "-S", "-I", "-c", first_code_cell(SOURCES[0])], cwd=tmp_path,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 1 and "Traceback" not in run.stderr
    for words in ("pip install . -r requirements/cpu.txt", "--no-deps -r requirements/offline.txt",
                  'PRESET = "tiny"', "CPU", "GPU", "docs/install.md"):
        assert words in run.stderr, words
    ok = subprocess.run([sys.executable, "-c", first_code_cell(SOURCES[0])], capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0 and not ok.stderr  # with the kit installed the cell is silent


def test_outside_a_checkout_the_working_folder_is_the_current_one(tmp_path):
    site, work = tmp_path / "site-packages" / "t2lib", tmp_path / "work"
    site.mkdir(parents=True), work.mkdir()
    (site / "__init__.py").write_text("")
    shutil.copy(REPO_ROOT / "t2lib" / "paths.py", site / "paths.py")  # as a non-editable install lays it out
    code = "from t2lib import paths; print(paths.IN_CHECKOUT, paths.FIGURES_DIR, paths.build_dir(), sep='|')"
    env = {"PYTHONPATH": str(site.parent), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(site.parent)!r}); {code}"],
                         cwd=work, capture_output=True, text=True, check=True, env=env).stdout.strip()
    assert out == f"False|{work / 'figures'}|{work / 'build'}"
    env["T2_HOME"] = str(tmp_path / "home")
    out = subprocess.run([sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(site.parent)!r}); {code}"],
                         cwd=work, capture_output=True, text=True, check=True, env=env).stdout.strip()
    assert out == f"False|{tmp_path / 'home' / 'figures'}|{tmp_path / 'home' / 'build'}"
    from t2lib import paths
    assert paths.IN_CHECKOUT and paths.HOME == REPO_ROOT  # here, a checkout: its own folders
