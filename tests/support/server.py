"""A real `roomcast serve` process on free ports, for tests.

Waits are multiples of :data:`support.waiting.UNIT`.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Final

import grpc

from roomcast.auth import mint_token
from support.tokens import SECRET
from support.waiting import UNIT

__all__ = ["NO_LOAD_ALERTS", "ServerProcess", "serving", "start_server"]

#: Settings that turn off the alert rules on load (CPU, memory, p99 latency,
#: error rate), so that a busy test machine adds no alerts of its own.
NO_LOAD_ALERTS: Final[Mapping[str, str]] = {
    "ROOMCAST_ALERT_CPU_PERCENT": "0",
    "ROOMCAST_ALERT_MEMORY_PERCENT": "0",
    "ROOMCAST_ALERT_LATENCY_P99_MS": "0",
    "ROOMCAST_ALERT_ERROR_RATE": "0",
}

_READY = re.compile(
    r"roomcast ready: grpc=(?P<host>[^:\s]+):(?P<port>\d+) http=[^:\s]+:(?P<http_port>\d+)"
)


@dataclass
class ServerProcess:
    """A running `roomcast serve`."""

    process: subprocess.Popen[str]
    target: str
    secret: str
    http: str = ""
    output: list[str] = field(default_factory=list)
    reader: threading.Thread | None = None

    def token(self, sub: str, *roles: str, tenant: str | None = None, ttl: float = 3600.0) -> str:
        """A token signed with this server's secret."""
        return mint_token(self.secret, subject=sub, roles=roles, tenant=tenant, ttl=ttl)

    @property
    def ws_url(self) -> str:
        """The WebSocket endpoint."""
        return f"ws://{self.http}/ws"

    def channel(self) -> grpc.aio.Channel:
        """A new client channel to this server."""
        return grpc.aio.insecure_channel(self.target)

    def stop(self, timeout: float = 15 * UNIT) -> int:
        """SIGTERM, then wait; SIGKILL if it does not exit. Returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.reader is not None:
            self.reader.join(5 * UNIT)
        if self.process.stdout is not None:
            self.process.stdout.close()
        return self.process.returncode

    @property
    def log(self) -> str:
        """Everything the server printed so far."""
        return "".join(self.output)


def start_server(
    *args: str,
    env: Mapping[str, str] | None = None,
    secret: str | None = SECRET,
    timeout: float = 20 * UNIT,
) -> ServerProcess:
    """Start `python -m roomcast serve` on a free gRPC port and wait until ready."""
    command = [
        *(sys.executable, "-m", "roomcast", "serve", "--host", "127.0.0.1"),
        *("--grpc-port", "0", "--http-port", "0"),
    ]
    environment = {k: v for k, v in os.environ.items() if not k.startswith("ROOMCAST_")}
    environment.update(env or {})
    if secret is not None:
        environment["ROOMCAST_JWT_SECRET"] = secret
    process = subprocess.Popen(
        [*command, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=environment,
    )
    assert process.stdout is not None
    output: list[str] = []
    found = threading.Event()
    target: list[str] = []

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            output.append(line)
            match = _READY.search(line)
            if match and not found.is_set():
                target.append(f"{match['host']}:{match['port']}")
                target.append(f"{match['host']}:{match['http_port']}")
                found.set()
        found.set()

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    if not found.wait(timeout) or not target:
        process.kill()
        process.wait()
        reader.join(5 * UNIT)
        process.stdout.close()
        raise RuntimeError("server did not start:\n" + "".join(output))
    return ServerProcess(process, target[0], secret or "", target[1], output, reader)


@contextmanager
def serving(
    *args: str, env: Mapping[str, str] | None = None, secret: str | None = SECRET
) -> Iterator[ServerProcess]:
    """A server started as :func:`start_server` starts it, stopped at the end.

    Raises:
        AssertionError: the server did not exit with 0 (a clean shutdown)
            after a body that did not raise.
    """
    server = start_server(*args, env=env, secret=secret)
    try:
        yield server
    finally:
        code = server.stop()
    assert code == 0, server.log
