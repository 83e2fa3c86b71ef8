"""
Layout rules of the package (issue 14), checked on the source with :mod:`ast` (nothing is imported):

* no import cycle among the modules of ``art_idfr`` -- every import counts: at module level, inside functions, and
  under ``if TYPE_CHECKING:`` (issue 43: a circle that only the type checker sees is still a circle; a module that
  needs another's class only for an annotation writes it as a string and does not import it);
* the library (``art_idfr/*.py``, ``art_idfr/training/``) never imports the experiment side (``art_idfr.experiments``);
* no function is longer than :data:`MAX_FUNCTION_LINES` lines of code (its docstring not counted).
"""
from __future__ import annotations

import ast
import pathlib
from typing import Dict, List, Set

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = "art_idfr"
EXPERIMENTS = f"{PACKAGE}.experiments"
MAX_FUNCTION_LINES = 80


def _module_files() -> Dict[str, pathlib.Path]:
    """Module name -> file, for every ``.py`` file of the package (``pkg/__init__.py`` is ``pkg``)."""
    modules = {}
    for path in sorted((ROOT / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


MODULES = _module_files()


def _import_nodes(node: ast.AST):
    """Every ``import`` / ``from ... import`` below ``node``: at module level, in functions, under ``if TYPE_CHECKING:``."""
    return (child for child in ast.walk(node) if isinstance(child, (ast.Import, ast.ImportFrom)))


def _imported_modules(module: str, path: pathlib.Path) -> Set[str]:
    """The package modules ``module`` imports (a ``from m import x`` names ``m.x`` where that is a module)."""
    is_package = path.name == "__init__.py"
    found: Set[str] = set()
    for node in _import_nodes(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            if node.level:  # relative: resolve against this module's package
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names = [f"{target}.{alias.name}" if f"{target}.{alias.name}" in MODULES else target
                     for alias in node.names]
        for name in names:
            while name and name not in MODULES:  # `import a.b.c` of a non-module attribute path: its module
                name = name.rpartition(".")[0]
            if name and name.split(".")[0] == PACKAGE and name != module:
                found.add(name)
    return found


GRAPH = {module: _imported_modules(module, path) for module, path in MODULES.items()}


def _cycles(nodes: Set[str], graph: Dict[str, Set[str]] = GRAPH) -> List[List[str]]:
    """The import cycles among ``nodes`` (edges of ``graph`` between them): strongly connected components of more
    than one module (Tarjan)."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on_stack: Set[str] = set()
    cycles: List[List[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v] & nodes):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(nodes):
        if v not in index:
            visit(v)
    return cycles


def _is_experiments(module: str) -> bool:
    return module == EXPERIMENTS or module.startswith(EXPERIMENTS + ".")


LIBRARY = {m for m in MODULES if not _is_experiments(m)}
EXPERIMENT_SIDE = {m for m in MODULES if _is_experiments(m)}


def test_the_import_parser_sees_function_level_and_type_checking_imports():
    # suite imports the attacks inside a method; the package art_idfr names its modules only under TYPE_CHECKING
    assert f"{EXPERIMENTS}.attacks" in GRAPH[f"{EXPERIMENTS}.evaluation.suite"]
    assert f"{PACKAGE}.denoiser" in GRAPH[PACKAGE]
    assert f"{EXPERIMENTS}.evaluation.labels" in GRAPH[f"{EXPERIMENTS}.evaluation.reports"]
    toy_source = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import art_idfr.unet\n"
    found = {node.module if isinstance(node, ast.ImportFrom) else node.names[0].name
             for node in _import_nodes(ast.parse(toy_source))}
    assert found == {"typing", "art_idfr.unet"}
    assert len(MODULES) > 10
    toy = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(set(toy), toy) == [["a", "b", "c"]] and _cycles({"a", "b", "d"}, toy) == []


def test_no_import_cycle_in_the_experiment_side():
    assert _cycles(EXPERIMENT_SIDE) == []


def test_no_import_cycle_in_the_library():
    """The library alone (``art_idfr/*.py``, ``art_idfr/training/``); its rewrite removes the denoiser <-> restorer
    cycle the earlier layout had."""
    assert _cycles(LIBRARY) == []


def test_no_import_cycle_in_the_whole_package():
    assert _cycles(set(MODULES)) == []


def test_the_library_never_imports_the_experiment_side():
    offenders = {m: sorted(GRAPH[m] & EXPERIMENT_SIDE) for m in sorted(LIBRARY) if GRAPH[m] & EXPERIMENT_SIDE}
    assert offenders == {}


def _function_lengths(path: pathlib.Path) -> Dict[str, int]:
    """``qualified name -> lines of code`` of every function in ``path`` (docstring lines not counted)."""
    lengths: Dict[str, int] = {}

    def walk(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = child.end_lineno - child.lineno + 1
                first = child.body[0] if child.body else None
                if (isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
                        and isinstance(first.value.value, str)):
                    n -= first.end_lineno - first.lineno + 1
                lengths[f"{prefix}{child.name}:{child.lineno}"] = n
                walk(child, f"{prefix}{child.name}.")
            elif isinstance(child, ast.ClassDef):
                walk(child, f"{prefix}{child.name}.")
            else:
                walk(child, prefix)

    walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)), "")
    return lengths


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_function_over_80_lines(module):
    too_long = {name: n for name, n in _function_lengths(MODULES[module]).items() if n > MAX_FUNCTION_LINES}
    assert too_long == {}, f"split these functions of {module} (lines of code, docstring not counted)"
