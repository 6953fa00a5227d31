"""The library's folders show its tiers: imports only go down the tiers, command lines only parse
and print, and notebooks call the library, never a command line."""
import ast
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Who may import whom: a tier imports its own modules, the small shared helpers at the top level
# and the tiers listed here (`fishfarm` is below them all).
TIERS = {"core": set(), "methods": {"core"}, "views": {"core", "methods"},
         "runs": {"core", "methods", "views"}, "cli": {"core", "methods", "views", "runs"}}
SHARED = {"atomic", "hardware", "locks", "logs", "paths", "presets", "runinfo", "samples", "session"}


def t2lib_imports(tree: ast.AST) -> set[str]:
    """Returns every t2lib module a file imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("t2lib")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("t2lib"):
            found |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
    return found


def tier(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def library_files():
    return sorted((ROOT / "t2lib").rglob("*.py"))


def test_the_top_level_holds_only_the_small_shared_helpers():
    top = {p.stem for p in (ROOT / "t2lib").glob("*.py")} - {"__init__", "__main__"}
    assert top == SHARED
    assert {p.name for p in (ROOT / "t2lib").iterdir() if p.is_dir() and p.name != "__pycache__"} == set(TIERS)


@pytest.mark.parametrize("path", library_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_go_down_the_tiers_and_no_command_imports_another(path):
    module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
    mine = tier(module) if tier(module) in TIERS else "shared"
    allowed = TIERS.get(mine, set()) | {mine, "shared"}
    if mine == "shared":  # presets hold the methods' typed configs; session loads model, SVD and backend
        allowed = {"shared", "core", "methods"}
    for imported in t2lib_imports(ast.parse(path.read_text())):
        other = tier(imported) if tier(imported) in TIERS else "shared"
        if imported in ("t2lib", "t2lib.cli") or module == "t2lib.__main__":
            continue
        assert other in allowed, f"{module} ({mine}) imports {imported} ({other})"
        if mine == "cli" and other == "cli":
            assert imported.split(".")[2] == module.split(".")[2], f"command {module} imports command {imported}"


@pytest.mark.parametrize("path", sorted((ROOT / "notebooks").glob("*.ipynb")), ids=lambda p: p.stem)
def test_notebooks_import_the_library_never_a_command_line(path):
    cells = [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]
    for cell in cells:
        source = "".join(cell["source"])
        lines = [line for line in source.splitlines() if not line.lstrip().startswith(("%", "!"))]
        for imported in t2lib_imports(ast.parse("\n".join(lines))):
            assert tier(imported) != "cli", f"{path.name} imports the command line {imported}"


def test_command_modules_define_only_parsers_and_mains():
    """A command module's functions parse, check arguments and print; anything a notebook or
    another command could call lives in the library (`t2lib.runs`)."""
    allowed = {"main", "parser", "chosen_tasks", "protocol", "print_plan"}
    for path in sorted((ROOT / "t2lib" / "cli").glob("*.py")):
        tree = ast.parse(path.read_text())
        names = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
        assert names <= allowed, f"{path.name} defines {sorted(names - allowed)}"


@pytest.mark.parametrize("folder", ["t2lib", "fishfarm/backends"])
def test_no_function_is_longer_than_sixty_lines(folder):
    long = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > 60:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({length} lines)")
    assert not long, long
