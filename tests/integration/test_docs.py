"""The grpcurl recipes in docs/grpc.md, run as written against a real server."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from harness import UNIT, ServerProcess, repository

GRPCURL_DIR = str(Path(sys.executable).parent)
RECIPE = re.compile(r"```sh\n(grpcurl .*?)```", re.DOTALL)
# grpcurl exits with the gRPC status code of a failed call plus 64; a
# Subscribe recipe ends by its own -max-time, which is DEADLINE_EXCEEDED (4).
DEADLINE_EXCEEDED_EXIT = 64 + 4


def recipes() -> list[str]:
    text = (repository() / "docs" / "grpc.md").read_text()
    found = RECIPE.findall(text)
    assert len(found) >= 12, "docs/grpc.md lost its grpcurl recipes"
    return found


@pytest.mark.parametrize("recipe", recipes(), ids=lambda r: r.split("\n")[0][-60:])
def test_recipe_runs_as_written(server: ServerProcess, recipe: str) -> None:
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
