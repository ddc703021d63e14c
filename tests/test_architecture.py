"""The package's shape (issue 23): no import circles between vlmstudy's modules, learner-facing code
does not import the stand-ins' training code, and no package module loads a repository script.

The graph is read from the source with :mod:`ast`, so it sees every ``import`` / ``from ... import``
statement wherever it is: at module level and inside functions (a function-level import is still a
dependency, only a later one). ``import`` statements inside ``if __name__ == "__main__":`` blocks
count too.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "vlmstudy"


def module_name(path: Path, root: Path = PACKAGE) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(current: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute module a ``from ... import`` names (``from .x import y`` in ``vlmstudy.a`` ->
    ``vlmstudy.x``)."""
    if not node.level:
        return node.module or ""
    base = current.split(".")
    if not is_package:
        base = base[:-1]
    if node.level > 1:
        base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(path: Path, modules: set[str], root: Path = PACKAGE) -> set[str]:
    """The package modules ``path`` imports (module and function level)."""
    name = module_name(path, root)
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(name, is_package, node)
            # ``from . import shapes`` / ``from .zoo import loading`` import submodules
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        for target in targets:
            # the deepest package module the name refers to (a.b.c -> a.b.c, else a.b, ...)
            parts = target.split(".")
            while parts and ".".join(parts) not in modules:
                parts.pop()
            if parts and ".".join(parts) != name:
                found.add(".".join(parts))
    return found


def import_graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    files = sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts)
    modules = {module_name(p, root) for p in files}
    return {module_name(p, root): imports_of(p, modules, root) for p in files}


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each as one cycle path
    through its modules. An edge from a module to one of its enclosing packages (``vlmstudy.zoo.x``
    -> ``vlmstudy.zoo``) is ignored: Python runs the package ``__init__`` first anyway, and its
    importing its own submodules is how packages work, not a circle."""
    edges = {m: {t for t in ts if not m.startswith(t + ".")} for m, ts in graph.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    counter = [0]

    def strongconnect(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                strongconnect(w)
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
                components.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            strongconnect(v)
    return [_cycle_path(edges, c) for c in components]


def cycle_components(graph: dict[str, set[str]]) -> list[list[str]]:
    """The modules of each circle (a strongly connected component), for the failure message."""
    return [sorted(set(c)) for c in find_cycles(graph)]


def _cycle_path(edges: dict[str, set[str]], component: list[str]) -> list[str]:
    """One closed path a -> b -> ... -> a inside a strongly connected component (for the message)."""
    members = set(component)
    start = component[0]
    # breadth-first search from start back to start, inside the component
    frontier = [[start]]
    seen = {start}
    while frontier:
        nxt = []
        for path in frontier:
            for w in sorted(edges[path[-1]] & members):
                if w == start:
                    return path + [start]
                if w not in seen:
                    seen.add(w)
                    nxt.append(path + [w])
        frontier = nxt
    return component  # pragma: no cover - a component always has a cycle


def test_the_graph_sees_module_and_function_level_imports():
    graph = import_graph()
    assert "vlmstudy.errors" in graph["vlmstudy.attention"]           # module level
    assert "vlmstudy.generation" in graph["vlmstudy.attention"]       # inside a function
    assert "vlmstudy.zoo.registry" in graph["vlmstudy.zoo.loading"]          # from .registry import ...
    assert "vlmstudy.quantize" in graph["vlmstudy.zoo.loading"]               # from .. import quantize


def test_find_cycles_names_a_circle():
    graph = {"p.a": {"p.b"}, "p.b": {"p.c"}, "p.c": {"p.a"}, "p.d": {"p.a"}}
    assert find_cycles(graph) == [["p.a", "p.b", "p.c", "p.a"]]
    assert find_cycles({"p.a": {"p.b"}, "p.b": set()}) == []


def test_no_import_cycles():
    cycles = find_cycles(import_graph())
    assert not cycles, "import circles in vlmstudy (break them: move the shared code down a layer):\n" + "\n".join(
        " -> ".join(c) for c in cycles)


def test_learner_code_does_not_import_zoo_training_code():
    graph = import_graph()
    # zoo.train_loop is the one generic loop (no recipe, no data): notebook 13's own two stages
    # (vlmstudy.assemble.stages) run on it; the zoo's recipes stay out of learner code.
    shared = {"vlmstudy.zoo.train_loop"}
    offenders = sorted(f"{m} imports {t}" for m, ts in graph.items() if not m.startswith("vlmstudy.zoo")
                       for t in ts if t.startswith("vlmstudy.zoo.train") and t not in shared)
    assert not offenders, "\n".join(offenders)


LOADERS = {"spec_from_file_location", "run_path", "SourceFileLoader", "exec", "compile", "module_from_spec"}


def script_loads(source: str) -> list[str]:
    """Functions (or the module body) of ``source`` that load a file as code (``importlib``'s
    ``spec_from_file_location``, ``runpy.run_path``, ``exec`` ...) and name ``tools`` (a repository
    script: tools/build_notebooks.py, tools/exercises/...) in the same place."""
    tree = ast.parse(source)
    functions = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    module_level = [n for stmt in tree.body if not isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                    for n in ast.walk(stmt)]
    found = []
    for scope, nodes in [(tree, module_level), *((f, list(ast.walk(f))) for f in functions)]:
        calls = {(n.func.attr if isinstance(n.func, ast.Attribute) else getattr(n.func, "id", ""))
                 for n in nodes if isinstance(n, ast.Call)}
        mentions_tools = any(isinstance(n, ast.Constant) and isinstance(n.value, str)
                             and ("tools" in n.value.split("/") or n.value == "tools" or "build_notebooks" in n.value)
                             for n in nodes)
        if calls & LOADERS and mentions_tools:
            found.append(getattr(scope, "name", "<module>"))
    return found


def test_the_script_loading_check_sees_a_file_loaded_from_tools():
    bad = """
import importlib.util
def _builder():
    path = REPO_DIR / "tools" / "build_notebooks.py"
    spec = importlib.util.spec_from_file_location("b", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
"""
    assert script_loads(bad) == ["_builder"]
    assert script_loads("def f(folder):\n    return spec_from_file_location('x', folder + '/x.py')\n") == []


def test_no_package_module_loads_repository_scripts():
    offenders = {str(path.relative_to(PACKAGE.parent)): script_loads(path.read_text(encoding="utf-8"))
                 for path in sorted(PACKAGE.rglob("*.py"))}
    offenders = {k: v for k, v in offenders.items() if v}
    assert not offenders, f"package modules that load files from tools/ (move the code into the package): {offenders}"
