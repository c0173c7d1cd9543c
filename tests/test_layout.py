"""The layout stays readable: the runtime packages never import the tooling, and no runtime module grows past what
a newcomer reads in one sitting (README "Code map")."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RUNTIME = ("worker", "producer")
MAX_LINES = 400


def runtime_modules() -> list[Path]:
    return sorted(path for package in RUNTIME for path in (ROOT / package).rglob("*.py"))


def imported(path: Path) -> set[str]:
    """Every module ``path`` imports, at any depth (lazy imports inside functions included)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


def test_the_runtime_packages_are_found() -> None:
    names = {path.relative_to(ROOT).as_posix() for path in runtime_modules()}
    assert {"worker/pipeline.py", "worker/index.py", "producer/__main__.py", "producer/gallery_app.py"} <= names


@pytest.mark.parametrize("path", runtime_modules(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_no_runtime_module_imports_the_tooling(path: Path) -> None:
    tooling = sorted(name for name in imported(path) if name == "tooling" or name.startswith("tooling."))
    assert not tooling, f"{path.relative_to(ROOT)} imports {tooling}: move what it needs into the runtime package"


def test_no_runtime_module_is_over_400_lines() -> None:
    long = {
        path.relative_to(ROOT).as_posix(): n
        for path in runtime_modules()
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert not long, f"split these along a clear seam: {long}"


def test_the_import_check_sees_lazy_imports(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from tooling.samples import photo\n    import tooling.eval.corpus\n")
    assert imported(module) == {"tooling.samples", "tooling.eval.corpus"}
