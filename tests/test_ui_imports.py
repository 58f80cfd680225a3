"""No import circle inside ui/: screens and widgets never reach back into what imports them.

Every import counts, as Python or import-linter would see it: at the top, inside a function, and
under TYPE_CHECKING (a circle there still ties the modules together)."""

from __future__ import annotations

import ast
from pathlib import Path

import simularity_tui.ui

UI = Path(simularity_tui.ui.__file__).parent
PACKAGE = "simularity_tui.ui"


def imported_names(source: str) -> set[str]:
    """The first name under ui/ of everything `source` imports from ui/ (`app`, `play_screen`…)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.level == 1:  # from .x import y; from . import x
            found.update([node.module.split(".")[0]] if node.module else (alias.name for alias in node.names))
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith(PACKAGE + "."):
            found.add((node.module or "").removeprefix(PACKAGE + ".").split(".")[0])
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module == PACKAGE:
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.Import):
            names = (alias.name for alias in node.names if alias.name.startswith(PACKAGE + "."))
            found.update(name.removeprefix(PACKAGE + ".").split(".")[0] for name in names)
    return found


def import_graph(folder: Path) -> dict[str, set[str]]:
    """Each module of `folder` and the modules of `folder` it imports."""
    sources = {path.stem: path.read_text(encoding="utf-8") for path in sorted(folder.glob("*.py"))}
    return {module: (imported_names(source) & sources.keys()) - {module} for module, source in sources.items()}


def a_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle, as the modules around it (the first again at the end); None if there is none."""
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> list[str] | None:
        if module in path:
            return path[path.index(module) :] + [module]
        if module in done:
            return None
        for imported in sorted(graph.get(module, ())):
            if found := visit(imported, [*path, module]):
                return found
        done.add(module)
        return None

    return next((found for module in sorted(graph) if (found := visit(module, []))), None)


def test_no_import_circle_inside_ui() -> None:
    graph = import_graph(UI)
    assert {"commands", "play_screen", "library_screen"} <= graph["app"], "the walk sees the app's imports"
    circle = a_cycle(graph)
    assert circle is None, " -> ".join(circle or [])


def test_no_screen_or_widget_imports_the_app() -> None:
    importers = sorted(module for module, imports in import_graph(UI).items() if "app" in imports)
    assert importers == [], f"{importers} reach up into the app: post a message instead"


def test_an_import_in_a_function_or_under_type_checking_counts(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .b import B\n")
    (tmp_path / "b.py").write_text("def f():\n    from simularity_tui.ui import a\n")
    (tmp_path / "c.py").write_text("import simularity_tui.ui.a.x\nfrom simularity_tui.ui.b import y\n")
    graph = import_graph(tmp_path)
    assert graph == {"a": {"b"}, "b": {"a"}, "c": {"a", "b"}}
    assert a_cycle(graph) == ["a", "b", "a"]
