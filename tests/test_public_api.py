"""The public API: roomcast.__all__, and __all__ in every module."""

from __future__ import annotations

import ast
import importlib
import tomllib
from pathlib import Path

import pytest

import roomcast

PACKAGE = Path(roomcast.__file__).parent
PYPROJECT = PACKAGE.parents[1] / "pyproject.toml"

EXPORTED = [
    "BrokerError",
    "BrokerTimeout",
    "ClientSettings",
    "ConfigError",
    "Forbidden",
    "InvalidArgument",
    "InvalidRoom",
    "LimitExceeded",
    "Node",
    "NotFound",
    "Policy",
    "Principal",
    "Role",
    "Room",
    "RoomPattern",
    "RoomRule",
    "RoomcastError",
    "Scope",
    "Settings",
    "SlowConsumer",
    "TokenExpired",
    "TokenVerifier",
    "TooLarge",
    "Unauthenticated",
    "Unavailable",
    "Who",
    "__version__",
    "mint_token",
    "parse_pattern",
    "parse_room_name",
    "serve",
]


def test_all_is_pinned_and_sorted() -> None:
    assert roomcast.__all__ == EXPORTED
    assert sorted(EXPORTED) == EXPORTED


@pytest.mark.parametrize("name", EXPORTED)
def test_every_exported_name_is_importable(name: str) -> None:
    namespace: dict[str, object] = {}
    exec(f"from roomcast import {name}", namespace)
    assert namespace[name] is getattr(roomcast, name)


def test_the_version_matches_the_package_metadata() -> None:
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    assert roomcast.__version__ == project["version"]


def module_files() -> list[Path]:
    files = sorted(
        path
        for path in PACKAGE.rglob("*.py")
        if "v1" not in path.relative_to(PACKAGE).parts  # generated code
    )
    assert files, PACKAGE
    return files


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def declared_all(path: Path) -> list[str] | None:
    """The literal ``__all__`` a module assigns at its top level, if any."""
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, ast.AnnAssign):
            targets = [node.target]
        else:
            continue
        if any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets):
            assert node.value is not None
            value = ast.literal_eval(node.value)
            assert isinstance(value, list)
            return value
    return None


def module_params() -> list[object]:
    return [pytest.param(path, id=module_name(path)) for path in module_files()]


@pytest.mark.parametrize("path", module_params())
def test_every_module_declares_all(path: Path) -> None:
    names = declared_all(path)
    assert names is not None, f"{path} has no __all__"
    assert len(set(names)) == len(names)


@pytest.mark.parametrize(
    "path", [p for p in module_files() if p.name != "__main__.py"], ids=module_name
)
def test_every_name_in_all_exists(path: Path) -> None:
    names = declared_all(path)
    if names is None:
        pytest.skip("no __all__ (reported by test_every_module_declares_all)")
    module = importlib.import_module(module_name(path))
    assert module.__all__ == names
    missing = [name for name in names if not hasattr(module, name)]
    assert missing == []


def test_the_core_modules_are_covered() -> None:
    names = {module_name(path) for path in module_files()}
    assert {
        "roomcast",
        "roomcast.auth",
        "roomcast.config",
        "roomcast.errors",
        "roomcast.history",
        "roomcast.hub",
        "roomcast.idempotency",
        "roomcast.policy",
        "roomcast.presence",
        "roomcast.rooms",
        "roomcast.metrics.histogram",
    } <= names
    assert not any(".v1" in name for name in names)
