"""Running the kit's notebooks headlessly with papermill, in order. Executed copies go to an output
folder (default build/notebooks); the stored notebooks stay without outputs. Figures and results
are written by the notebooks themselves (`t2lib.paths.figures_dir`). The book (`make book`) reads
executed tiny copies kept in docs/notebooks/; `refresh_book_copies` remakes the stale ones."""
from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

from t2lib.atomic import atomic_path
from t2lib.paths import REPO_ROOT, build_dir

NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
BOOK_NOTEBOOKS_DIR = REPO_ROOT / "docs" / "notebooks"  # executed tiny copies the book renders
BOOK_PRESET = "tiny"  # every book copy is a tiny run


def list_notebooks(folder: Path = NOTEBOOKS_DIR, *, only: Sequence[str] = ()) -> list[Path]:
    """Returns the numbered notebooks in run order, filtered by number prefixes in `only`."""
    found = sorted(p for p in folder.glob("[0-9][0-9]_*.ipynb"))
    if only:
        found = [p for p in found if any(p.name.startswith(o) for o in only)]
    return found


def run_notebook(path: Path, out_dir: Path, *, parameters: dict, progress: bool = True) -> Path:
    """Executes one notebook with papermill; returns the executed copy's path.

    The kernel is the Python running this function: its folder is put first on PATH, so the
    `python3` kernel papermill starts is this virtual environment's.
    """
    import papermill

    os.environ["PATH"] = str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / path.name
    papermill.execute_notebook(str(path), str(out), parameters=parameters, kernel_name="python3",
                               cwd=str(path.parent), progress_bar=progress, log_output=False)
    return out


def takes_parameter(path: Path, name: str) -> bool:
    """Returns whether a notebook's `parameters` cell sets `name` (e.g. SUITE)."""
    cells = json.loads(Path(path).read_text())["cells"]
    return any(f"{name} =" in "".join(c["source"]) for c in cells
               if c["cell_type"] == "code" and "parameters" in c.get("metadata", {}).get("tags", []))


# Notebooks that are not part of the paper's reproduction, and why: 10 trains experts on a suite file
# of your own (its example: three experts trained, then adaptation, 19 minutes on tiny). A run of every notebook
# (`make reproduce`) leaves it out; `--only 10`, or a run with a suite file, runs it;
# `make book-notebooks` keeps its book copy.
OUTSIDE_REPRODUCTION = {"10": "your own tasks"}


def run_notebooks(preset: str, out_dir: Path, *, only: Sequence[str] = (), progress: bool = True,
                  backend: str | None = None, suite: str | None = None) -> list[Path]:
    """Executes the numbered notebooks (those `only` names, else those of the reproduction) in order
    on `preset` (with BACKEND=`backend` where given), into out_dir/<preset>/, printing each one's
    time; returns the executed copies' paths. With a suite file (`suite`), only the notebooks that
    take SUITE run, into out_dir/<suite name>/<preset>/."""
    from fishfarm.suites import get_suite

    parameters = {"PRESET": preset, **({"BACKEND": backend} if backend else {}), **({"SUITE": suite} if suite else {})}
    folder = out_dir / (f"{get_suite(suite).name}/{preset}" if suite else preset)
    done = []
    for nb in list_notebooks(only=only):
        if suite and not takes_parameter(nb, "SUITE"):
            continue
        if not suite and not only and nb.name[:2] in OUTSIDE_REPRODUCTION:
            print(f"== {nb.name}: not part of the reproduction ({OUTSIDE_REPRODUCTION[nb.name[:2]]}); "
                  f"run it with --only {nb.name[:2]}", flush=True)
            continue
        start = time.time()
        print(f"== {nb.name} ({', '.join(f'{k}={v}' for k, v in parameters.items())})", flush=True)
        done.append(run_notebook(nb, folder, parameters=parameters, progress=progress))
        print(f"   done in {time.time() - start:.0f} s", flush=True)
    return done


def code_cells(path: Path) -> list[str]:
    """Returns the sources of a notebook's code cells in order, leaving out the cell papermill
    injects with the run's parameters (tagged `injected-parameters`)."""
    cells = json.loads(Path(path).read_text())["cells"]
    return ["".join(c["source"]) for c in cells if c["cell_type"] == "code"
            and "injected-parameters" not in c.get("metadata", {}).get("tags", [])]


def stale_book_copies(folder: Path = BOOK_NOTEBOOKS_DIR, *, sources: Path = NOTEBOOKS_DIR) -> list[Path]:
    """Returns the source notebooks whose executed copy in `folder` is missing or has other code
    cells than the source (the copy was made before the source changed)."""
    return [nb for nb in list_notebooks(sources)
            if not (folder / nb.name).is_file() or code_cells(folder / nb.name) != code_cells(nb)]


def copy_to_book(executed: Sequence[Path], folder: Path = BOOK_NOTEBOOKS_DIR) -> list[Path]:
    """Copies executed notebooks into the book's folder, each file replaced atomically; returns
    the copies' paths."""
    done = []
    for path in executed:
        with atomic_path(folder / Path(path).name) as tmp:
            shutil.copyfile(path, tmp)
        done.append(folder / Path(path).name)
    return done


def refresh_book_copies(*, folder: Path = BOOK_NOTEBOOKS_DIR, every: bool = False,
                        progress: bool = True) -> list[Path]:
    """Executes on the tiny preset (`BOOK_PRESET`) the notebooks whose copy in `folder` is missing or stale (all
    of them with `every`) and puts each executed copy there atomically; returns the copies made.

    A notebook that fails leaves its old copy in place.
    """
    todo = list_notebooks() if every else stale_book_copies(folder)
    done = []
    build_dir().mkdir(parents=True, exist_ok=True)
    for nb in todo:
        start = time.time()
        print(f"== {nb.name} (PRESET={BOOK_PRESET}) -> {folder}", flush=True)
        with tempfile.TemporaryDirectory(dir=build_dir(), prefix="book-") as tmp:
            executed = run_notebook(nb, Path(tmp), parameters={"PRESET": BOOK_PRESET}, progress=progress)
            done += copy_to_book([executed], folder)
        print(f"   done in {time.time() - start:.0f} s", flush=True)
    return done
