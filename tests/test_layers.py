"""The import structure of the design card, read from the source (lazy imports inside functions
count): no cycles, the floor imports no framework package, no backend imports the other.

Layers, bottom up: ``common`` and ``weights`` (the floor), ``torch_impl`` and ``tf_impl`` (the
backends), ``agezoo`` and ``benchmarks`` (the application).
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FLOOR = {"common", "weights"}
BACKENDS = {"torch_impl", "tf_impl"}
APPLICATION = {"agezoo", "benchmarks"}
PACKAGES = FLOOR | BACKENDS | APPLICATION


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """Module → the project modules it imports anywhere in its source (``from a import b``
    counts as ``a.b`` when that is a module, else ``a``)."""
    files = [p for pkg in PACKAGES for p in (root / pkg).rglob("*.py")]
    modules = {_module_name(p) for p in files}

    def resolve(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for path in files:
        me = _module_name(path)
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            else:
                continue
            deps.update(d for n in names if (d := resolve(n)) and d != me)
        graph[me] = deps
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
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
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


@pytest.fixture(scope="module")
def graph():
    return import_graph()


def _top(module: str) -> str:
    return module.split(".")[0]


def test_the_walk_sees_lazy_imports(graph):
    # agezoo.backends imports the backends by name only; tf_impl.models imports its builders
    # at the top and benchmarks.frozen imports torch_impl inside functions: both must be seen.
    assert "tf_impl.backbones" in graph["tf_impl.models"]
    assert "torch_impl.models" in graph["benchmarks.frozen"]


def test_no_import_cycles(graph):
    assert cycles(graph) == []


def test_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def _imports_outside(graph, layer: set[str], allowed) -> list[str]:
    """The imports of the modules of ``layer`` that reach a package ``allowed(own)`` refuses."""
    return sorted(
        f"{m} -> {d}"
        for m, deps in graph.items()
        if _top(m) in layer
        for d in deps
        if _top(d) not in allowed(_top(m))
    )


def test_floor_imports_nothing_above_it(graph):
    assert _imports_outside(graph, FLOOR, lambda own: FLOOR) == []


def test_backends_import_only_the_floor_and_themselves(graph):
    assert _imports_outside(graph, BACKENDS, lambda own: FLOOR | {own}) == []


def test_no_file_over_400_lines():
    long = {
        str(p.relative_to(ROOT)): n
        for pkg in [*PACKAGES, "tests"]
        for p in (ROOT / pkg).rglob("*.py")
        if (n := len(p.read_text().splitlines())) > 400
    }
    assert long == {}
