"""The roomcast-client distribution: its public API, its README's examples, a fresh install."""

from __future__ import annotations

import ast
import importlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from support.paths import repository
from support.server import ServerProcess
from support.waiting import UNIT

import roomcast_client

CLIENT = repository() / "clients" / "python"
PACKAGE = CLIENT / "src" / "roomcast_client"
EXAMPLE = re.compile(r"```python\n(.*?)```", re.DOTALL)
BIN = Path(sys.executable).parent

EXPORTED = [
    "DEFAULT_RECONNECT",
    "DEFAULT_TIMEOUT",
    "Alert",
    "Alerts",
    "ClientClosed",
    "DeadlineExceeded",
    "Event",
    "EventHandler",
    "EventSubscription",
    "Gap",
    "GapHandler",
    "InvalidArgument",
    "JSONValue",
    "NotFound",
    "PermissionDenied",
    "Position",
    "PublishItem",
    "Published",
    "Reconnect",
    "ResourceExhausted",
    "RoomcastClient",
    "RoomcastError",
    "Sender",
    "ServerError",
    "Subscription",
    "TokenSource",
    "Tracked",
    "Unauthenticated",
    "Unavailable",
]


def test_all_is_pinned() -> None:
    # Its order is ruff's (RUF022: constants, then classes, then functions).
    assert roomcast_client.__all__ == EXPORTED


def test_the_package_is_imported_from_the_checkout() -> None:
    # The tests exercise clients/python as it is, not some other install.
    assert Path(roomcast_client.__file__).resolve().parent == PACKAGE


def hand_written_modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "v1" not in p.relative_to(PACKAGE).parts)


@pytest.mark.parametrize("path", hand_written_modules(), ids=lambda p: p.stem)
def test_every_module_declares_an_all_of_existing_names(path: Path) -> None:
    tree = ast.parse(path.read_text())
    declared = [
        ast.literal_eval(node.value)
        for node in tree.body
        if isinstance(node, ast.Assign)
        and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets)
    ]
    assert len(declared) == 1, f"{path.name} has no __all__"
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
    module = importlib.import_module(name)
    assert [n for n in declared[0] if not hasattr(module, n)] == []


def examples() -> list[str]:
    found = EXAMPLE.findall((CLIENT / "README.md").read_text())
    assert len(found) >= 6, "clients/python/README.md lost its examples"
    return found


@pytest.fixture(scope="module")
def example_files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("examples")
    files = []
    for number, source in enumerate(examples()):
        path = folder / f"example_{number}.py"
        path.write_text(source)
        files.append(path)
    return files


def example_environment(server: ServerProcess) -> dict[str, str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("ROOMCAST_")}
    return environment | {
        "ROOMCAST_TARGET": server.target,
        "SERVICE_TOKEN": server.token("backend", "service"),
        "ADMIN_TOKEN": server.token("root", "super_admin"),
        "USER_TOKEN": server.token("alice", "user", tenant="acme"),
    }


def run_example(python: Path | str, example: Path, server: ServerProcess) -> str:
    """Run ``example`` with ``python`` against ``server``; what it printed.

    Raises:
        AssertionError: it failed, or printed a traceback.
    """
    result = subprocess.run(
        [str(python), str(example)],
        capture_output=True,
        text=True,
        env=example_environment(server),
        timeout=30 * UNIT,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return result.stdout


@pytest.mark.parametrize("number", range(len(examples())))
def test_readme_example_runs(server: ServerProcess, example_files: list[Path], number: int) -> None:
    printed = run_example(sys.executable, example_files[number], server)
    assert printed.strip(), "an example should show what it did"


def test_readme_examples_pass_mypy_strict(example_files: list[Path]) -> None:
    result = subprocess.run(
        [str(BIN / "mypy"), "--strict", "--no-incremental", *map(str, example_files)],
        capture_output=True,
        text=True,
        timeout=120 * UNIT,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture(scope="module")
def fresh_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new virtualenv with nothing but `pip install ./clients/python` in it."""
    venv = tmp_path_factory.mktemp("fresh") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", str(CLIENT)],
        check=True,
        capture_output=True,
        timeout=300 * UNIT,
    )
    return python


def test_a_fresh_install_works_without_the_server_package(
    fresh_venv: Path, server: ServerProcess, example_files: list[Path]
) -> None:
    probe = subprocess.run(
        [str(fresh_venv), "-c", "import importlib.util as u; print(u.find_spec('roomcast'))"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert probe.stdout.strip() == "None"
    assert "global.lobby greeting" in run_example(fresh_venv, example_files[0], server)


def test_a_fresh_install_is_typed(fresh_venv: Path, example_files: list[Path]) -> None:
    # mypy reads the installed wheel (py.typed included) from the fresh venv.
    result = subprocess.run(
        [
            str(BIN / "mypy"),
            "--strict",
            "--no-incremental",
            "--python-executable",
            str(fresh_venv),
            *map(str, example_files),
        ],
        capture_output=True,
        text=True,
        timeout=120 * UNIT,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
