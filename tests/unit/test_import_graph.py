"""No import circles among the project's modules (runtime/, imagetool/).

Every import statement counts, at module level or inside a function: a
function-level import that closes a circle still ties the two modules
together for a reader. `python tests/unit/test_import_graph.py` prints the
circles it finds."""
import ast
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from project_modules import modules  # noqa: E402


def imports(name: str, path: str, known: dict[str, str]) -> set[str]:
    """The project modules that module `name` imports, wherever the
    statement is. `from P import N` names the submodule P.N when there is
    one, else P itself."""
    is_pkg = path.endswith("__init__.py")
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name in known)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = name.split(".") if is_pkg else name.split(".")[:-1]
                parts = parts[:len(parts) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            for a in node.names:
                sub = f"{base}.{a.name}"
                if sub in known:
                    out.add(sub)
                elif base in known:
                    out.add(base)
    out.discard(name)
    return out


def cycles() -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    known = modules()
    graph = {m: sorted(imports(m, p, known)) for m, p in known.items()}
    index, low, stack, on, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def test_the_graph_sees_module_and_function_level_imports():
    known = modules()
    # module level (from P import submodule), and inside functions
    assert "runtime.toolkit.cmdtable" in imports("runtime.cli", known["runtime.cli"], known)
    assert "runtime.container" in imports("runtime.cli", known["runtime.cli"], known)
    # relative imports inside a package
    assert "runtime.cgroups.v1" in imports("runtime.cgroups", known["runtime.cgroups"], known)


def test_no_import_circles():
    assert cycles() == []


if __name__ == "__main__":
    for c in cycles():
        print(" <-> ".join(c))
    sys.exit(1 if cycles() else 0)
