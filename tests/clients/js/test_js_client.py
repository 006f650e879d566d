"""The browser client, clients/js/roomcast.js, run from Node against real servers.

Each Node test file (clients/js/test/*.test.mjs) runs under ``node --test``
against a ``roomcast serve`` of its own, started here with the settings the
file needs. The Node side does what a browser does, over real sockets (the
``ws`` package, or Node's own WebSocket). What only a backend can do, it asks
of a small HTTP *control* endpoint served from this module: publish over gRPC
with grpcio, move a connection with JoinRoom, restart the server on the same
ports, freeze it (SIGSTOP) to play a dead peer. Node gets the endpoints from
the environment: ``ROOMCAST_WS_URL``, ``ROOMCAST_TARGET``,
``ROOMCAST_JWT_SECRET`` (to mint tokens), ``ROOMCAST_TEST_CONTROL`` and
``ROOMCAST_TEST_UNIT``.

``scripts/dev test`` installs clients/js (npm ci) before pytest runs.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
import pytest
from support.grpc import bearer, payload
from support.paths import repository
from support.ports import free_port
from support.server import ServerProcess, start_server
from support.waiting import UNIT

from roomcast.v1 import realtime_pb2, realtime_pb2_grpc

JS_CLIENT = repository() / "clients" / "js"
NODE = shutil.which("node")


@dataclass(frozen=True)
class NodeSuite:
    """One Node test file and the server it runs against."""

    file: str
    server_env: Mapping[str, str] = field(default_factory=dict)
    node_options: tuple[str, ...] = ()
    seconds: float = 60.0  # the whole file, in UNITs


SUITES = [
    NodeSuite("client.test.mjs"),
    NodeSuite("reconnect.test.mjs", seconds=90.0),
    NodeSuite(
        "auth.test.mjs",
        # token.expiring comes 2 s before a token's exp; two connections per user.
        server_env={
            "ROOMCAST_TOKEN_EXPIRY_NOTICE": str(2 * UNIT),
            "ROOMCAST_MAX_CONNECTIONS_PER_USER": "2",
        },
    ),
    # Node 20's own WebSocket (undici, the browsers' API) is behind a flag.
    NodeSuite("builtin.test.mjs", node_options=("--experimental-websocket",)),
    # Replies of at most 4 KiB: 50 missed events of some 750 bytes take ten pages.
    NodeSuite("paging.test.mjs", server_env={"ROOMCAST_WS_MAX_REPLY_BYTES": "4096"}),
    NodeSuite("nesting.test.mjs"),
]


class Backend:
    """The server the Node tests use, and what they may ask of it."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = dict(env)
        self.ports = (free_port(), free_port())  # gRPC, HTTP: the same across restarts
        self.lock = threading.RLock()
        self.server = self._start()
        self.channel = grpc.insecure_channel(self.server.target)
        self.service = self.server.token("backend", "service")
        self.logs: list[str] = []

    def _start(self) -> ServerProcess:
        grpc_port, http_port = self.ports
        return start_server(
            "--grpc-port", str(grpc_port), "--http-port", str(http_port), env=self.env
        )

    def stub(self) -> realtime_pb2_grpc.RealtimeServiceStub:
        return realtime_pb2_grpc.RealtimeServiceStub(self.channel)

    def publish(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Publish ``payloads`` to ``room`` in order, one Publish call each."""
        published = []
        with self.lock:
            stub = self.stub()
            for item in body["payloads"]:
                response = stub.Publish(
                    realtime_pb2.PublishRequest(
                        room=body["room"],
                        event=body["event"],
                        payload=payload(**item),
                        tenant_id=body.get("tenant_id", ""),
                    ),
                    metadata=bearer(self.service),
                    timeout=10 * UNIT,
                )
                published.append(
                    {"offset": response.offset, "epoch": response.epoch, "id": response.id}
                )
        return {"published": published}

    def join_room(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """gRPC JoinRoom: put a user's connections into a room."""
        with self.lock:
            response = self.stub().JoinRoom(
                realtime_pb2.JoinRoomRequest(
                    room=body["room"], tenant_id=body.get("tenant_id", ""), user_id=body["user_id"]
                ),
                metadata=bearer(self.service),
                timeout=10 * UNIT,
            )
        return {"connections": response.connections}

    def restart(self, _: Mapping[str, Any]) -> dict[str, Any]:
        """SIGTERM (connections get 4200), then a new server on the same ports."""
        with self.lock:
            code = self.server.stop()
            self.logs.append(self.server.log)
            assert code == 0, self.server.log
            self.channel.close()
            self.server = self._start()
            self.channel = grpc.insecure_channel(self.server.target)
        return {"restarted": True}

    def pause(self, _: Mapping[str, Any]) -> dict[str, Any]:
        """Freeze the server: its sockets stay open, nothing answers."""
        self.server.process.send_signal(signal.SIGSTOP)
        return {"paused": True}

    def resume(self, _: Mapping[str, Any]) -> dict[str, Any]:
        self.server.process.send_signal(signal.SIGCONT)
        return {"resumed": True}

    def stop(self) -> int:
        """Stop the server; its exit code."""
        with self.lock:
            self.server.process.send_signal(signal.SIGCONT)  # in case a test left it frozen
            self.channel.close()
            code = self.server.stop()
            self.logs.append(self.server.log)
            return code

    @property
    def log(self) -> str:
        """Every server's output, the current one's included."""
        current = "" if self.server.process.poll() is not None else self.server.log
        return "".join(self.logs) + current


@contextmanager
def control(backend: Backend) -> Iterator[str]:
    """Serve the backend's actions at ``POST /<action>`` (JSON in, JSON out); yields the URL."""
    actions: dict[str, Callable[[Mapping[str, Any]], dict[str, Any]]] = {
        "publish": backend.publish,
        "join_room": backend.join_room,
        "restart": backend.restart,
        "pause": backend.pause,
        "resume": backend.resume,
    }

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            action = actions.get(self.path.strip("/"))
            length = int(self.headers.get("Content-Length") or 0)
            try:
                if action is None:
                    raise LookupError(f"no action {self.path}")
                body = json.loads(self.rfile.read(length) or b"{}")
                status, answer = 200, action(body)
            except Exception as error:  # the Node test shows it and fails
                status, answer = 500, {"error": f"{type(error).__name__}: {error}"}
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # quiet: node's output is what matters

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5 * UNIT)


@pytest.fixture(scope="module")
def node() -> str:
    """The node binary, once clients/js is installed."""
    if NODE is None and os.environ.get("CI") != "true":
        pytest.skip("Node.js is not installed (CI requires it)")
    assert NODE is not None, "Node.js is required in CI"
    assert (JS_CLIENT / "node_modules" / "ws").is_dir(), (
        "clients/js is not installed: run scripts/dev test, or npm ci there"
    )
    return NODE


@pytest.mark.timeout(int(150 * UNIT))
@pytest.mark.parametrize("suite", SUITES, ids=lambda suite: suite.file)
def test_node_suite(node: str, suite: NodeSuite) -> None:
    backend = Backend(suite.server_env)
    try:
        with control(backend) as control_url:
            environment = {k: v for k, v in os.environ.items() if not k.startswith("ROOMCAST_")}
            environment |= {
                "ROOMCAST_WS_URL": backend.server.ws_url,
                "ROOMCAST_TARGET": backend.server.target,
                "ROOMCAST_JWT_SECRET": backend.server.secret,
                "ROOMCAST_TEST_CONTROL": control_url,
                "ROOMCAST_TEST_UNIT": str(UNIT),
            }
            command = [
                node,
                *suite.node_options,
                "--test",
                "--test-reporter=spec",
                f"test/{suite.file}",
            ]
            returncode, out, err = run(command, suite.seconds * UNIT, environment)
    finally:
        server_code = backend.stop()
    report = f"node --test {suite.file}:\n{out}\n{err}"
    print(report)  # shown with pytest -rP
    assert returncode == 0, report + "\n--- server log ---\n" + backend.log
    assert server_code == 0, backend.log
    # It ran tests, all of them passed, and none was skipped or left to do.
    counts = summary(out)
    assert counts["tests"] > 0, report
    assert counts["pass"] == counts["tests"], report
    assert counts["fail"] == counts["skipped"] == counts["todo"] == counts["cancelled"] == 0, report


def run(command: list[str], seconds: float, env: Mapping[str, str]) -> tuple[int, str, str]:
    """Run ``node --test`` in clients/js; its exit code and output.

    node runs each test file in a child process: on a timeout the whole
    process group is killed, so that no test process outlives the run.
    """
    process = subprocess.Popen(
        command,
        cwd=JS_CLIENT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = process.communicate(timeout=seconds)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        out, err = process.communicate()
        return -1, f"(killed after {seconds:g} s)\n{out}", err
    finally:
        if process.poll() is None:  # interrupted: leave nothing behind
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    return process.returncode, out, err


def summary(output: str) -> dict[str, int]:
    """The closing counts of node's test runner: its lines "<info sign> pass 9" and so on."""
    counts = dict.fromkeys(("tests", "pass", "fail", "skipped", "todo", "cancelled"), -1)
    for name, value in re.findall(r"^\u2139 (\w+) (\d+)$", output, flags=re.MULTILINE):
        if name in counts:
            counts[name] = int(value)
    return counts
