"""The house stays one-way: the rules of the import graph, checked on the source.

- the core (everything but the shells) loads with grpc, websockets and redis
  absent: it is pure Python over protobuf, testable and reusable alone;
- the two shells, ``rpc/`` and ``bridge/``, never import each other;
- only ``config.py`` reads the environment;
- no import circle (imports for type checking included: a module that
  names another's type depends on it as much as one that calls it).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

SOURCE = Path(__file__).resolve().parents[1] / "src" / "roomcast"

#: What may need grpc, websockets or redis: the shells, their entry points
#: and the Redis broker.
SHELLS = {
    "roomcast.__main__",
    "roomcast.bridge",
    "roomcast.brokers.redis.broker",
    "roomcast.brokers.redis.clients",
    "roomcast.brokers.redis.listener",
    "roomcast.brokers.redis.scripts",
    "roomcast.cli",
    "roomcast.dashboard",
    "roomcast.rpc",
    "roomcast.server",
    "roomcast.v1.admin_pb2_grpc",
    "roomcast.v1.event_pb2_grpc",
    "roomcast.v1.realtime_pb2_grpc",
}

_LOAD_WITHOUT_SHELL_LIBRARIES = """
import importlib, importlib.abc, pkgutil, sys

class Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.partition(".")[0] in {"grpc", "websockets", "redis"}:
            raise ImportError(f"{name} is not installed")
        return None

sys.meta_path.insert(0, Absent())
import roomcast
for module in pkgutil.walk_packages(roomcast.__path__, "roomcast."):
    try:
        importlib.import_module(module.name)
    except ImportError as error:
        print(module.name, error)
"""


def test_the_core_loads_without_grpc_websockets_or_redis() -> None:
    result = subprocess.run(
        [sys.executable, "-c", _LOAD_WITHOUT_SHELL_LIBRARIES],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    failed = {line.split()[0] for line in result.stdout.splitlines()}
    # Exactly the shells: a core module that needs one of them breaks the
    # rule, and a shell that no longer does belongs in the core.
    assert failed == SHELLS, result.stdout


def _modules() -> Iterator[tuple[str, ast.Module]]:
    for path in sorted(SOURCE.rglob("*.py")):
        if path.name.endswith(("_pb2.py", "_pb2_grpc.py")):
            continue
        parts = path.relative_to(SOURCE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        yield name, ast.parse(path.read_text(), str(path))


def _imported(module: str, tree: ast.Module) -> Iterator[str]:
    """Every module ``module`` imports, by absolute name (relative ones resolved)."""
    package = module if module.count(".") == 0 else module.rpartition(".")[0]
    if (SOURCE.parent / Path(*module.split(".")) / "__init__.py").exists():
        package = module
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")
            if node.level:
                base = base[: len(base) - node.level + 1]
                yield ".".join([*base, node.module] if node.module else base)
            elif node.module:
                yield node.module


def test_the_shells_never_import_each_other() -> None:
    crossings = [
        (module, target)
        for module, tree in _modules()
        for shell, other in (
            ("roomcast.rpc", "roomcast.bridge"),
            ("roomcast.bridge", "roomcast.rpc"),
        )
        if module.startswith(shell)
        for target in _imported(module, tree)
        if target == other or target.startswith(other + ".")
    ]
    assert crossings == []


def test_only_config_reads_the_environment() -> None:
    readers = []
    for module, tree in _modules():
        for node in ast.walk(tree):
            reads = (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id == "os"
                and node.attr in {"environ", "getenv", "environb", "putenv"}
            ) or (
                isinstance(node, ast.ImportFrom)
                and node.module == "os"
                and any(alias.name in {"environ", "getenv"} for alias in node.names)
            )
            if reads:
                readers.append(f"{module}:{node.lineno}")
    assert all(reader.startswith("roomcast.config:") for reader in readers), readers
    assert readers, "the rule must see config.py's own reads"


def _graph() -> dict[str, set[str]]:
    """Module → the roomcast modules it imports (a ``from pkg import name`` means pkg)."""
    modules = dict(_modules())
    graph: dict[str, set[str]] = {}
    for module, tree in modules.items():
        targets = set()
        for target in _imported(module, tree):
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != module:
                targets.add(target)
        graph[module] = targets
    return graph


def _circles(graph: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles: list[set[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for target in graph[module]:
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            component = set()
            while True:
                member = stack.pop()
                component.add(member)
                if member == module:
                    break
            if len(component) > 1:
                circles.append(component)

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return circles


def test_no_import_circle() -> None:
    # The node builds sessions, monitor, operations and the security watch;
    # each takes the node back as a Protocol of what it uses, never by import.
    assert _circles(_graph()) == []


def test_the_circle_finder_finds_a_circle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _circles(graph) == [{"a", "b", "c"}]


def test_the_rules_see_relative_imports() -> None:
    # The checks above are only as good as _imported: it must resolve
    # ``from ..node import Node`` in rpc/calls.py.
    imported = {
        target
        for module, tree in _modules()
        if module == "roomcast.rpc.calls"
        for target in _imported(module, tree)
    }
    assert "roomcast.node" in imported
    assert "roomcast.errors" in imported
