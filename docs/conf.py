"""Sphinx configuration of the kit's book (`make book`): the executed tiny notebooks kept in
docs/notebooks/ and the pages in docs/, rendered by MyST-NB without executing anything, so no
model is loaded. MathJax is served from the book itself (the django-static-mathjax wheel's copy),
so equations are typeset with no network."""
from __future__ import annotations

import shutil
import tomllib
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent

project = "Transformer² kit"
author = "Transformer² kit contributors"
release = version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
copyright = "2026, Transformer² kit contributors"

extensions = ["myst_nb", "sphinx.ext.mathjax"]
nb_execution_mode = "off"          # the copies are executed by `make book-notebooks`, never here
nb_merge_streams = True
myst_enable_extensions = ["dollarmath", "amsmath"]
myst_heading_anchors = 3
exclude_patterns = ["_build", "**/.ipynb_checkpoints", "**/.*.ipynb", "check_site.py"]
suppress_warnings = ["mystnb.unknown_mime_type",  # widget views of notebook 07 need a live kernel
                    "toc.empty_glob"]  # the index's `*` finds nothing while every page is listed

html_theme = "furo"
html_title = f"Transformer² kit {version}"
html_static_path: list[str] = []
mathjax_path = "mathjax/tex-chtml.js"  # relative to _static: copied there by `copy_mathjax`


def missing_copies() -> list[str]:
    """Returns the source notebooks (notebooks/NN_*.ipynb) that have no executed copy here."""
    sources = sorted(p.name for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    return [name for name in sources if not (DOCS / "notebooks" / name).is_file()]


def missing_message() -> str | None:
    """Returns what to say when executed copies are missing (None when none is)."""
    missing = missing_copies()
    if not missing:
        return None
    return (f"docs/notebooks/ has no executed copy of {', '.join(missing)}: run `make book-notebooks` "
            "(it executes the missing and stale notebooks on the tiny preset)")


def check_copies(app) -> None:
    """Stops the build when an executed copy is missing: the book would lack a chapter."""
    from sphinx.errors import ConfigError

    if missing_message():
        raise ConfigError(missing_message())


def copy_mathjax(app, exception) -> None:
    """Copies MathJax 3's CHTML component and its fonts into the built book's _static/mathjax/."""
    if exception is not None or app.builder.format != "html":
        return
    from importlib.util import find_spec

    spec = find_spec("mathjax")
    es5 = Path(spec.submodule_search_locations[0]) / "static" / "mathjax" / "es5" if spec else None
    if es5 is None or not (es5 / "tex-chtml.js").is_file():
        raise RuntimeError("MathJax not found: install requirements/docs.txt (django-static-mathjax)")
    out = Path(app.outdir) / "_static" / "mathjax"
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(es5 / "tex-chtml.js", out / "tex-chtml.js")
    fonts = out / "output" / "chtml" / "fonts" / "woff-v2"
    shutil.copytree(es5 / "output" / "chtml" / "fonts" / "woff-v2", fonts, dirs_exist_ok=True)


def setup(app):
    app.connect("builder-inited", check_copies)
    app.connect("build-finished", copy_mathjax)


if __name__ == "__main__":  # `python docs/conf.py`: the check alone, before a build (make book)
    import sys

    if missing_message():
        sys.exit(missing_message())
