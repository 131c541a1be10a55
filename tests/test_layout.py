"""The domain library's layout holds: a stage per folder with a docstring, small modules, no
import cycles, environment variables named in one place, and no Dagster in the library."""

import ast
from pathlib import Path

from conftest import PROJECT

LIBRARY = PROJECT / "kto_pipeline"
MAX_LINES = 400
# A module may pass MAX_LINES only with its reason recorded here.
LONG_MODULES: dict[str, str] = {}


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(LIBRARY.rglob("*.py")):
        parts = list(path.relative_to(PROJECT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """kto_pipeline modules `name` imports anywhere in its body (function-level imports too:
    a cycle through a deferred import is still a cycle)."""
    found = set()
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".") if is_package else name.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{a.name}" for a in node.names] + [base]
        else:
            continue
        for target in targets:
            # The longest known module the target names (a name imported from a package is the package).
            parts = target.split(".")
            for i in range(len(parts), 0, -1):
                candidate = ".".join(parts[:i])
                if candidate in modules:
                    found.add(candidate)
                    break
    found.discard(name)
    return found


def test_the_library_has_no_import_cycles():
    modules = _modules()
    graph = {name: _imports(name, path, modules) for name, path in modules.items()}
    # A package importing its own submodules to re-export them is its table of contents, not a
    # cycle; a submodule importing its package back is.
    for name in graph:
        graph[name] = {t for t in graph[name] if not t.startswith(name + ".")}
    cycles, state = [], {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycles.append(stack[stack.index(nxt) :] + [nxt] if nxt in stack else [node, nxt])
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert cycles == []


def test_every_stage_folder_says_what_it_does():
    for init in sorted(LIBRARY.rglob("__init__.py")):
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc and len(doc) > 40, (
            f"{init.relative_to(PROJECT)} needs a docstring saying what the stage does and why"
        )


def test_modules_stay_small():
    long = {
        str(path.relative_to(PROJECT)): n
        for path in LIBRARY.rglob("*.py")
        if (n := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert {m: n for m, n in long.items() if m not in LONG_MODULES} == {}


def _named_variables(path: Path) -> list[int]:
    """Lines of `path` whose code (not docstrings or comments) spells a KTO_PIPELINE_ name."""
    tree = ast.parse(path.read_text())
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and "KTO_PIPELINE_" in node.value
        and id(node) not in docstrings
    ]


def test_environment_variables_are_named_only_in_config():
    # Every KTO_PIPELINE_* setting is declared in kto_pipeline/config; code elsewhere goes through it.
    paths = [PROJECT / "definitions.py"] + [
        path
        for folder in ("kto_pipeline", "assets", "resources", "benchmarks")
        for path in sorted((PROJECT / folder).rglob("*.py"))
        if not path.is_relative_to(LIBRARY / "config")
    ]
    offenders = [f"{path.relative_to(PROJECT)}:{line}" for path in paths for line in _named_variables(path)]
    assert offenders == []


def test_the_library_never_imports_dagster():
    for path in sorted(LIBRARY.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else ([node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            )
            assert not any(n == "dagster" or n.startswith(("dagster.", "dagster_")) for n in names), path
