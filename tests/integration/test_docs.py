"""The grpcurl recipes in docs/grpc.md, run as written against a real server."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import UNIT, ServerProcess, repository, start_server

GRPCURL_DIR = str(Path(sys.executable).parent)
RECIPE = re.compile(r"```sh\n(grpcurl .*?)```", re.DOTALL)
# grpcurl exits with the gRPC status code of a failed call plus 64; a
# Subscribe recipe ends by its own -max-time, which is DEADLINE_EXCEEDED (4).
DEADLINE_EXCEEDED_EXIT = 64 + 4


# Any fenced block; a ```json block right after a recipe (prose between is
# fine) is the response the recipe prints.
FENCED = re.compile(r"```(\w*)\n(.*?)```", re.DOTALL)
# Values that differ from run to run; the documented ones are examples.
VARYING = {"id", "epoch", "time"}


def recipes() -> list[str]:
    text = (repository() / "docs" / "grpc.md").read_text()
    found = RECIPE.findall(text)
    assert len(found) >= 12, "docs/grpc.md lost its grpcurl recipes"
    return found


def recipes_with_responses() -> list[tuple[str, str | None]]:
    """Every recipe in document order, with the response shown after it, if any."""
    text = (repository() / "docs" / "grpc.md").read_text()
    pairs: list[tuple[str, str | None]] = []
    previous_was_recipe = False
    for language, body in FENCED.findall(text):
        if language == "sh" and body.startswith("grpcurl "):
            pairs.append((body, None))
            previous_was_recipe = True
            continue
        if language == "json" and previous_was_recipe:
            pairs[-1] = (pairs[-1][0], body)
        previous_was_recipe = False
    assert [recipe for recipe, _ in pairs] == recipes()
    return pairs


def run_recipe(server: ServerProcess, recipe: str) -> subprocess.CompletedProcess[str]:
    """Run a recipe through bash and the real grpcurl, pointed at ``server``."""
    host, port = server.target.rsplit(":", 1)
    command = recipe.replace("localhost:50051", f"{host}:{port}")
    if "-max-time" in command:
        command = re.sub(r"-max-time \d+", f"-max-time {2 * UNIT:g}", command)
    environment = dict(os.environ)
    environment |= {
        "PATH": f"{GRPCURL_DIR}:{environment.get('PATH', '')}",
        "ADMIN_TOKEN": server.token("root", "super_admin"),
        "USER_TOKEN": server.token("alice", "user", tenant="acme"),
        "SERVICE_TOKEN": server.token("backend", "service"),
    }
    environment["TOKEN"] = environment["USER_TOKEN"]
    result = subprocess.run(
        ["bash", "-c", command],
        capture_output=True,
        text=True,
        env=environment,
        timeout=30 * UNIT,
        check=False,
    )
    if "Subscribe" in command:
        assert result.returncode == DEADLINE_EXCEEDED_EXIT, result.stderr
        assert '"subscribed"' in result.stdout
        assert "DeadlineExceeded" in result.stderr
    else:
        assert result.returncode == 0, result.stderr
        assert "ERROR" not in result.stderr
    return result


@pytest.mark.parametrize("recipe", recipes(), ids=lambda r: r.split("\n")[0][-60:])
def test_recipe_runs_as_written(server: ServerProcess, recipe: str) -> None:
    run_recipe(server, recipe)


def json_stream(text: str) -> list[Any]:
    """The JSON values printed one after the other (a stream prints several)."""
    decoder, values, at = json.JSONDecoder(), [], 0
    while text[at:].strip():
        at += len(text[at:]) - len(text[at:].lstrip())
        value, at = decoder.raw_decode(text, at)
        values.append(value)
    return values


def normalized(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: "<varies>" if k in VARYING else normalized(v) for k, v in value.items()}
    if isinstance(value, list):
        return [normalized(item) for item in value]
    return value


@pytest.fixture(scope="module")
def fresh_server() -> Iterator[ServerProcess]:
    """A server that has seen nothing but the recipes, run in document order."""
    process = start_server()
    yield process
    assert process.stop() == 0, process.log


def test_recipes_in_order_print_the_documented_responses(fresh_server: ServerProcess) -> None:
    shown = 0
    for recipe, documented in recipes_with_responses():
        result = run_recipe(fresh_server, recipe)
        if documented is None:
            continue
        shown += 1
        assert normalized(json_stream(result.stdout)) == normalized(json_stream(documented)), (
            f"{recipe}\nprints\n{result.stdout}"
        )
    assert shown >= 7, "docs/grpc.md lost the responses shown after its recipes"
