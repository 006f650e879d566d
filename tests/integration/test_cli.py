"""The roomcast command and the real grpcurl binary against a real server."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.server import ServerProcess
from support.waiting import UNIT

from roomcast.auth import Role, TokenVerifier

GRPCURL = Path(sys.executable).parent / "grpcurl"
LONG_SECRET = "cli-secret-that-is-at-least-32-bytes-long"


def roomcast(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("ROOMCAST_")}
    environment.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "roomcast", *args],
        capture_output=True,
        text=True,
        env=environment,
        timeout=30 * UNIT,
        check=False,
    )


def grpcurl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(GRPCURL), *args], capture_output=True, text=True, timeout=30 * UNIT, check=False
    )


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        yield taken.getsockname()[1]


def test_refused_start_without_a_key_prints_one_line() -> None:
    result = roomcast("serve", "--grpc-port", "0")
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.strip().count("\n") == 0
    assert "no JWT key" in result.stderr


def test_refused_start_on_a_busy_port_prints_one_line(busy_port: int) -> None:
    result = roomcast(
        "serve", "--host", "127.0.0.1", "--grpc-port", str(busy_port), "--jwt-secret", LONG_SECRET
    )
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert f"127.0.0.1:{busy_port}" in result.stderr
    assert "in use" in result.stderr


@pytest.mark.parametrize(
    ("option", "content", "expected"),
    [
        ("--jwt-public-key", None, "cannot read JWT public key"),
        ("--policy", None, "cannot read policy file"),
        ("--policy", "[[rooms]\n", "not valid TOML"),
        ("--policy", '[[rooms]]\npattern = "game.{id}"\nsubscribe = ["wizard"]\n', "wizard"),
    ],
)
def test_refused_start_on_bad_files_prints_one_line(
    tmp_path: Path, option: str, content: str | None, expected: str
) -> None:
    path = tmp_path / "file"
    if content is not None:
        path.write_text(content)
    env = {} if option == "--jwt-public-key" else {"ROOMCAST_JWT_SECRET": LONG_SECRET}
    result = roomcast("serve", "--grpc-port", "0", option, str(path), env=env)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert expected in result.stderr


def test_token_command_mints_a_verifiable_token() -> None:
    result = roomcast(
        "token",
        "--sub",
        "alice",
        "--tenant",
        "acme",
        "--role",
        "user",
        "--ttl",
        "60",
        env={"ROOMCAST_JWT_SECRET": LONG_SECRET},
    )
    assert result.returncode == 0, result.stderr
    principal = TokenVerifier(secret=LONG_SECRET).verify(result.stdout.strip())
    assert (principal.subject, principal.tenant, principal.roles) == (
        "alice",
        "acme",
        frozenset({Role.USER}),
    )
    assert 0 < principal.expires_at - time.time() <= 60


def test_token_command_without_secret_fails_clearly() -> None:
    result = roomcast("token", "--sub", "a", "--role", "user")
    assert result.returncode == 2
    assert "no secret" in result.stderr


def test_publish_command_reports_errors_by_status(server: ServerProcess) -> None:
    token = server.token("alice", "user", tenant="acme")
    result = roomcast(
        "publish", "platform.admins", "x", "{}", "--target", server.target, "--token", token
    )
    assert result.returncode == 1
    assert result.stderr.startswith("roomcast: PERMISSION_DENIED: ")
    assert token not in result.stderr


def test_publish_command_rejects_non_object_payload(server: ServerProcess) -> None:
    token = server.token("svc", "service")
    result = roomcast(
        "publish", "global.x", "e", "[1]", "--target", server.target, "--token", token
    )
    assert result.returncode == 2
    assert "JSON object" in result.stderr


def test_grpcurl_lists_and_describes_through_reflection(server: ServerProcess) -> None:
    listed = grpcurl("-plaintext", server.target, "list")
    assert listed.returncode == 0, listed.stderr
    services = set(listed.stdout.split())
    assert {
        "roomcast.v1.RealtimeService",
        "roomcast.v1.AdminService",
        "grpc.health.v1.Health",
    } <= services
    assert any("reflection" in s for s in services)
    described = grpcurl("-plaintext", server.target, "describe", "roomcast.v1.RealtimeService")
    assert described.returncode == 0, described.stderr
    assert "rpc Subscribe ( .roomcast.v1.SubscribeRequest ) returns ( stream" in described.stdout
    # The .proto comments travel with the descriptors.
    assert "Publish one event to one room" in described.stdout


def test_grpcurl_publish_reaches_roomcast_tail(server: ServerProcess) -> None:
    admin = server.token("root", "super_admin")
    service = server.token("backend", "service")
    environment = {k: v for k, v in os.environ.items() if not k.startswith("ROOMCAST_")}
    environment |= {"ROOMCAST_TOKEN": admin, "ROOMCAST_TARGET": server.target}
    tail = subprocess.Popen(
        [sys.executable, "-m", "roomcast", "tail", "global.*"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment,
    )
    try:
        assert tail.stderr is not None
        assert tail.stdout is not None
        assert tail.stderr.readline().startswith("subscribed: global.*")
        published = grpcurl(
            "-plaintext",
            "-H",
            f"authorization: Bearer {service}",
            "-d",
            '{"room": "global.grpcurl", "event": "greeting", "payload": {"text": "hello"}}',
            server.target,
            "roomcast.v1.RealtimeService/Publish",
        )
        assert published.returncode == 0, published.stderr
        offset = json.loads(published.stdout)["offset"]
        line = json.loads(tail.stdout.readline())
    finally:
        tail.terminate()
        tail.communicate(timeout=10 * UNIT)
    assert line["room"] == "global.grpcurl"
    assert line["event"] == "greeting"
    assert line["payload"] == {"text": "hello"}
    assert line["offset"] == offset
    assert line["sender"]["service"] == "backend"


def test_grpcurl_without_token_is_unauthenticated(server: ServerProcess) -> None:
    result = grpcurl(
        "-plaintext",
        "-d",
        '{"room": "global.x", "event": "e"}',
        server.target,
        "roomcast.v1.RealtimeService/Publish",
    )
    assert result.returncode != 0
    assert "Unauthenticated" in result.stderr
    assert "authorization: Bearer" in result.stderr
