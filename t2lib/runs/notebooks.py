"""Running the kit's notebooks headlessly with papermill, in order. Executed copies go to an output
folder (default build/notebooks); the stored notebooks stay without outputs. Figures and results
are written by the notebooks themselves (`t2lib.paths.figures_dir`)."""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Sequence

from t2lib.paths import REPO_ROOT

NOTEBOOKS_DIR = REPO_ROOT / "notebooks"


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


def run_notebooks(preset: str, out_dir: Path, *, only: Sequence[str] = (), progress: bool = True,
                  backend: str | None = None) -> list[Path]:
    """Executes the numbered notebooks (those `only` names, else all) in order on `preset` (with
    BACKEND=`backend` where given), into out_dir/<preset>/, printing each one's time; returns the
    executed copies' paths."""
    parameters = {"PRESET": preset, **({"BACKEND": backend} if backend else {})}
    done = []
    for nb in list_notebooks(only=only):
        start = time.time()
        print(f"== {nb.name} ({', '.join(f'{k}={v}' for k, v in parameters.items())})", flush=True)
        done.append(run_notebook(nb, out_dir / preset, parameters=parameters, progress=progress))
        print(f"   done in {time.time() - start:.0f} s", flush=True)
    return done
