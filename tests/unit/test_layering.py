"""The layering rule of docs/architecture.md, enforced on the source.

Imports are read from the syntax tree of every module of ``jarvis_trio`` -- module level,
function level and ``if TYPE_CHECKING:`` blocks alike -- so an import that only a type checker
or a rarely taken branch performs still counts. Three rules:

* no import cycle between modules of the package;
* a module imports only from its own layer or below (the table :data:`LAYERS`);
* no ``importlib.import_module`` / ``__import__`` naming one of our modules (an import no tool
  and no reader sees).

A module that is in no layer fails the test too: a new module gets a layer when it is created.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE_ROOT = Path(__file__).resolve().parents[2] / "jarvis_trio"

# docs/architecture.md draws these; a prefix covers a package and everything below it
LAYERS: dict[str, int] = {
    # 1: values, the exception tree, which side of the asyncio/Trio boundary a call is on
    "jarvis_trio.errors": 1,
    "jarvis_trio.config": 1,
    "jarvis_trio.payload": 1,
    "jarvis_trio._sides": 1,
    "jarvis_trio._throttle": 1,
    "jarvis_trio._logcontext": 1,
    "jarvis_trio._tracing": 1,
    "jarvis_trio._histogram": 1,
    "jarvis_trio._signals": 1,
    # 2: protocols and services that know nothing of agents
    "jarvis_trio.swim": 2,
    "jarvis_trio.transport": 2,
    "jarvis_trio.storage": 2,
    "jarvis_trio.auth": 2,
    "jarvis_trio.mailbox": 2,
    "jarvis_trio._redis": 2,
    "jarvis_trio.services": 2,
    "jarvis_trio.compat": 2,
    "jarvis_trio._http": 2,
    # 3: routing of messages between agents, on one node and across nodes
    "jarvis_trio.peers": 3,
    "jarvis_trio.cluster": 3,
    # 4: what users subclass and how it is kept alive
    "jarvis_trio.agent": 4,
    "jarvis_trio._supervision": 4,
    "jarvis_trio._roster": 4,
    # 5: the composition root
    "jarvis_trio.mesh": 5,
    # the operator's side of a node, started by the mesh: it reads the node through a protocol
    "jarvis_trio.ops": 5,
    # 6: built on the whole runtime
    "jarvis_trio.testing": 6,
    "jarvis_trio.cli": 6,
    "jarvis_trio.bench": 6,
    "jarvis_trio": 6,  # the package itself: the public names, re-exported
}

Graph = dict[str, set[str]]


def module_name(path: Path, root: Path) -> tuple[str, bool]:
    """Dotted name of ``path`` under the package ``root``, and whether it is a package."""
    parts = [root.name, *path.relative_to(root).with_suffix("").parts]
    if parts[-1] == "__init__":
        return ".".join(parts[:-1]), True
    return ".".join(parts), False


def import_graph(root: Path) -> Graph:
    """Module → the modules of the same package it imports (by syntax, every branch)."""
    sources = {module_name(p, root): p for p in sorted(root.rglob("*.py"))}
    modules = {name for name, _ in sources}
    graph: Graph = {}
    for (name, is_package), path in sources.items():
        targets: set[str] = set()
        here = name.split(".") if is_package else name.split(".")[:-1]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = here[: len(here) - node.level + 1]
                    source = ".".join([*base, *([node.module] if node.module else [])])
                else:
                    source = node.module or ""
                for alias in node.names:
                    submodule = f"{source}.{alias.name}"
                    targets.add(submodule if submodule in modules else source)
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def cycles(graph: Graph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def layer_of(module: str, layers: dict[str, int]) -> int | None:
    """The layer of the longest prefix of ``module`` in ``layers``."""
    parts = module.split(".")
    for end in range(len(parts), 0, -1):
        layer = layers.get(".".join(parts[:end]))
        if layer is not None:
            return layer
    return None


def upward_imports(graph: Graph, layers: dict[str, int]) -> list[str]:
    """Every import of a higher layer, as ``a (n) -> b (m)``."""
    found = []
    for module, targets in sorted(graph.items()):
        mine = layer_of(module, layers)
        for target in sorted(targets):
            theirs = layer_of(target, layers)
            if mine is not None and theirs is not None and theirs > mine:
                found.append(f"{module} (layer {mine}) imports {target} (layer {theirs})")
    return found


def hidden_imports(root: Path) -> list[str]:
    """Calls of ``importlib.import_module`` / ``__import__`` that name one of our modules
    or a name computed at run time (which could be one)."""
    found = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            called = (
                func.attr
                if isinstance(func, ast.Attribute)
                else func.id
                if isinstance(func, ast.Name)
                else ""
            )
            if called not in ("import_module", "__import__"):
                continue
            first = node.args[0] if node.args else None
            named = first.value if isinstance(first, ast.Constant) else None
            if not isinstance(named, str) or named.startswith((".", root.name)):
                found.append(f"{path.relative_to(root.parent)}:{node.lineno}")
    return found


# -- the package ------------------------------------------------------------------------------


def test_no_import_cycle_inside_the_package() -> None:
    assert cycles(import_graph(PACKAGE_ROOT)) == []


def test_layers_import_only_downwards() -> None:
    assert upward_imports(import_graph(PACKAGE_ROOT), LAYERS) == []


def test_every_module_has_a_layer() -> None:
    unplaced = [m for m in import_graph(PACKAGE_ROOT) if layer_of(m, LAYERS) is None]
    assert unplaced == [], "give each new module a layer in LAYERS and docs/architecture.md"


def test_no_import_hidden_from_tools() -> None:
    assert hidden_imports(PACKAGE_ROOT) == []


def test_the_graph_sees_what_the_package_imports() -> None:
    graph = import_graph(PACKAGE_ROOT)
    assert "jarvis_trio.peers.router" in graph["jarvis_trio.mesh"]
    assert "jarvis_trio.cluster" in graph["jarvis_trio.mesh"]  # a function-level import
    assert "jarvis_trio.peers.client" in graph["jarvis_trio.agent"]  # under TYPE_CHECKING


# -- the checks themselves, on a package made for them ------------------------------------------


def write_package(root: Path, files: dict[str, str]) -> Path:
    package = root / "pkg"
    for relative, source in files.items():
        path = package / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source)
    return package


def test_a_cycle_is_found_whatever_branch_imports(tmp_path: Path) -> None:
    package = write_package(
        tmp_path,
        {
            "__init__.py": "",
            "low.py": "import typing\nif typing.TYPE_CHECKING:\n    from .high import H\n",
            "high.py": "def f():\n    from . import low\n",
            "sub/__init__.py": "from .leaf import x\n",
            "sub/leaf.py": "x = 1\n",
        },
    )
    graph = import_graph(package)
    assert cycles(graph) == [["pkg.high", "pkg.low"]]
    assert graph["pkg.sub"] == {"pkg.sub.leaf"}


def test_an_upward_import_is_named(tmp_path: Path) -> None:
    package = write_package(
        tmp_path, {"__init__.py": "", "low.py": "import pkg.top.x\n", "top/x.py": ""}
    )
    found = upward_imports(import_graph(package), {"pkg.low": 1, "pkg.top": 2, "pkg": 2})
    assert found == ["pkg.low (layer 1) imports pkg.top.x (layer 2)"]


@pytest.mark.parametrize(
    ("source", "hidden"),
    [
        ("import importlib\nimportlib.import_module('pkg.top')\n", True),
        ("from importlib import import_module\nimport_module('.top', 'pkg')\n", True),
        ("import importlib\nname = 'x'\nimportlib.import_module(name)\n", True),
        ("__import__('pkg')\n", True),
        ("import importlib\nimportlib.import_module('json')\n", False),
    ],
)
def test_importlib_imports_of_our_modules_are_found(
    tmp_path: Path, source: str, hidden: bool
) -> None:
    package = write_package(tmp_path, {"__init__.py": "", "m.py": source})
    assert bool(hidden_imports(package)) is hidden


def test_the_asyncio_seam_needs_no_type_ignore() -> None:
    """compat/ is written against the same types as the rest (no patching after the fact)."""
    ignores = [
        f"{path.name}:{number}"
        for path in sorted((PACKAGE_ROOT / "compat").rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if "type: ignore" in line
    ]
    assert ignores == []
