"""Dependency direction between the project's packages, checked in fresh processes and in the source.

``bot`` (Discord) and ``admin_ui`` (Gradio) do not know each other; only ``imagine`` wires them
together. No project module imports another that imports it back, even lazily or for type checking.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("bot", "engine", "admin_ui", "imagine")
# bot.__main__ is the `python -m bot` shim: it runs the whole service, so it imports the panel by design
SHIMS = frozenset({"bot.__main__"})

IMPORT_PACKAGE = """
import importlib, json, pkgutil, sys
package = importlib.import_module({package!r})
names = sorted(m.name for m in pkgutil.walk_packages(package.__path__, {package!r} + ".")
               if m.name not in {skip!r})
for name in names:
    importlib.import_module(name)
print(json.dumps({{"imported": names, "modules": sorted(sys.modules)}}))
"""


def import_every_module(package: str, skip: frozenset[str] = frozenset()) -> dict[str, list[str]]:
    """Import every module of ``package`` (but ``skip``) in a fresh interpreter; report what got loaded."""
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    code = IMPORT_PACKAGE.format(package=package, skip=sorted(skip))
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=180, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def loaded_from(modules: list[str], roots: tuple[str, ...]) -> list[str]:
    """The loaded modules that belong to one of the top-level packages ``roots``."""
    return [m for m in modules if m.split(".")[0] in roots]


def test_bot_modules_load_no_admin_panel() -> None:
    """Importing every module of bot (but the `python -m bot` shim) loads no admin_ui or gradio module."""
    report = import_every_module("bot", SHIMS)
    assert {"bot.client", "bot.cogs.imagine", "bot.delivery.router"} <= set(report["imported"])
    assert loaded_from(report["modules"], ("admin_ui", "gradio", "imagine")) == []


def test_admin_ui_modules_load_no_discord() -> None:
    """Importing every module of admin_ui loads no bot or discord module."""
    report = import_every_module("admin_ui")
    assert {"admin_ui.server", "admin_ui.tabs.playground"} <= set(report["imported"])
    assert loaded_from(report["modules"], ("bot", "discord", "imagine")) == []


# --- the import graph from the source ---------------------------------------------------------------


def project_modules() -> dict[str, Path]:
    """Every module of the project's packages, by dotted name (a package by its ``__init__``)."""
    modules: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = list(path.relative_to(REPO).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def imported_names(module: str, path: Path) -> Iterator[str]:
    """Every module name an import statement of this file names: at the top, inside functions, under
    ``if TYPE_CHECKING``; ``from a import b`` names ``a.b`` too, in case b is a module."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from .x import y
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            yield source
            yield from (f"{source}.{alias.name}" for alias in node.names)


def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports (explicitly named; a package's implicit parents are not)."""
    modules = project_modules()
    return {name: {target for target in imported_names(name, path) if target in modules and target != name}
            for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path that returns to its start, or None (depth-first search)."""
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return path[path.index(target):] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_find_cycle_sees_lazy_and_type_checking_imports(tmp_path: Path) -> None:
    """The scanner itself: an import inside a function or under TYPE_CHECKING counts as an edge."""
    (tmp_path / "a.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import b\n")
    (tmp_path / "b.py").write_text("def f():\n    from pkg.a import thing\n")
    graph = {"pkg.a": set(imported_names("pkg.a", tmp_path / "a.py")) & {"pkg.b"},
             "pkg.b": set(imported_names("pkg.b", tmp_path / "b.py")) & {"pkg.a"}}
    assert find_cycle(graph) == ["pkg.a", "pkg.b", "pkg.a"]
    assert find_cycle({"x": {"y"}, "y": set()}) is None


def test_no_project_module_imports_another_in_a_cycle() -> None:
    """bot, engine, admin_ui and imagine form an acyclic import graph (lazy and TYPE_CHECKING imports too)."""
    graph = import_graph()
    assert {"bot.client", "bot.cogs.buttons", "engine.service", "admin_ui.server", "imagine.main"} <= set(graph)
    assert find_cycle(graph) is None


def test_bot_and_admin_ui_do_not_name_each_other() -> None:
    """Only imagine (and the bot.__main__ shim that runs it) may import both front doors."""
    graph = import_graph()
    crossing = {(m, t) for m, targets in graph.items() for t in targets
                if {m.split(".")[0], t.split(".")[0]} == {"bot", "admin_ui"}
                or (m.split(".")[0] in ("bot", "admin_ui") and t.startswith("imagine") and m not in SHIMS)}
    assert crossing == set()


# --- the shape of the tree ------------------------------------------------------------------------------

MAX_MODULES_PER_PACKAGE = 15
MAX_MODULE_LINES = 400


def test_no_package_holds_more_than_fifteen_modules() -> None:
    """Packages show the architecture: none is a flat folder of everything (``__init__`` not counted)."""
    per_package: dict[Path, int] = {}
    for package in PACKAGES:
        for path in (REPO / package).rglob("*.py"):
            if path.name != "__init__.py":
                per_package[path.parent] = per_package.get(path.parent, 0) + 1
    crowded = {str(p.relative_to(REPO)): n for p, n in per_package.items() if n > MAX_MODULES_PER_PACKAGE}
    assert crowded == {}


def test_no_module_is_longer_than_four_hundred_lines() -> None:
    """Small modules named for what they hold."""
    long = {str(p.relative_to(REPO)): n for p in project_modules().values()
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES}
    assert long == {}


def test_the_architecture_drawing_names_every_engine_module() -> None:
    """docs/architecture.md's drawing is the code's: every engine package and module is named in it."""
    readme = (REPO / "docs" / "architecture.md").read_text(encoding="utf-8")
    drawing = readme[readme.index("## Architecture"):readme.index("One `/imagine` through it:")]
    engine_part = drawing[drawing.index("engine/ "):]
    missing = [str(p.relative_to(REPO)) for p in sorted((REPO / "engine").rglob("*.py"))
               if p.name != "__init__.py" and p.name not in engine_part]
    missing += [f"{p.name}/" for p in sorted((REPO / "engine").iterdir())
                if p.is_dir() and (p / "__init__.py").exists() and f"{p.name}/" not in engine_part]
    assert missing == []
