"""The package's layers show in its imports: nothing below ``tfseg.zoo`` imports it, and no import circle.

Every ``import`` statement of every module under ``tfseg/`` is read with ``ast``, function-level
ones included (a lazy import is still a dependency). ``tfseg.zoo`` sits on top of inference,
export, training, models and backbones; only the command line (``tfseg.commands``, ``tfseg.cli``)
and the package's own ``__init__`` may import it. Lower packages reach zoo names through
``tfseg.catalogue``, which the zoo registers itself with.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "tfseg"
ABOVE_THE_ZOO = ("tfseg.zoo", "tfseg.commands", "tfseg.cli", "tfseg.__main__")


def module_names():
    """``{module name: path}`` of every module of the package (packages by their ``__init__``)."""
    names = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return names


def imports_of(path, modules):
    """The tfseg modules a file imports, anywhere in it (a name imported from a package counts as the package)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.split(".")[0] == "tfseg")
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "tfseg":
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                found.add(candidate if candidate in modules else node.module)
    return {name for name in found if name in modules}


def import_graph():
    modules = module_names()
    return {name: imports_of(path, modules) for name, path in modules.items()}


def test_nothing_below_the_zoo_imports_it():
    offenders = {
        name: sorted(i for i in imported if i == "tfseg.zoo" or i.startswith("tfseg.zoo."))
        for name, imported in import_graph().items()
        if name != "tfseg" and not name.startswith(ABOVE_THE_ZOO)
    }
    assert {name: found for name, found in offenders.items() if found} == {}


def test_no_import_circle():
    """No strongly connected set of modules (the root package, which imports its parts to register them, aside)."""
    graph = {name: imported - {"tfseg", name} for name, imported in import_graph().items() if name != "tfseg"}
    index, low, stack, on_stack, circles = {}, {}, [], set(), []

    def visit(node):  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in graph.get(node, ()):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    assert circles == []


def test_the_reader_sees_function_level_imports():
    """The check would catch the lazy imports it was written for (a module-level import is not required)."""
    source = "def f():\n    from tfseg import zoo\n    import tfseg.zoo.cards\n"
    path = PACKAGE.parent / "tests" / "_import_probe.py"
    path.write_text(source)
    try:
        assert imports_of(path, module_names()) == {"tfseg.zoo", "tfseg.zoo.cards"}
    finally:
        path.unlink()
