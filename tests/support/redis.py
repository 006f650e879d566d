"""Real Redis for tests: `redis-server` processes on free ports, and a 3-master cluster.

Never the machine's shared instance and never a mock: every server here is
started by the test session, listens on 127.0.0.1 only, keeps nothing on
disk, and is stopped at the end. The binary comes from the Debian package
``redis-server`` (``.ci/run`` and ``scripts/dev test`` install it).

Waits are multiples of :data:`support.waiting.UNIT`.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Self

from support.ports import free_port
from support.waiting import UNIT

__all__ = [
    "RedisClusterProcesses",
    "RedisProcess",
    "cluster_ready",
    "command",
    "start_cluster",
    "start_redis",
]

_START_ATTEMPTS = 5


class _Stopped:
    """``with`` it, and it is stopped at the end."""

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def _binary(name: str) -> str:
    path = shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists() else None)
    if path is None:
        raise RuntimeError(
            f"{name} not found: install the Debian package redis-server "
            "(scripts/dev test and .ci/run install it)"
        )
    return path


def command(port: int, *args: str, timeout: float = 5 * UNIT) -> str:
    """Run one command with ``redis-cli`` against the server on ``port``; its output."""
    result = subprocess.run(
        [_binary("redis-cli"), "-h", "127.0.0.1", "-p", str(port), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=True,
    )
    return result.stdout.strip()


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=UNIT) as connection:
            connection.sendall(b"PING\r\n")
            return connection.recv(64).startswith((b"+PONG", b"-LOADING"))
    except OSError:
        return False


@dataclass
class RedisProcess(_Stopped):
    """One `redis-server` this test session started; ``with`` it to stop it at the end.

    Attributes:
        port: where it listens (on 127.0.0.1).
        cluster: started with ``--cluster-enabled yes``.
    """

    port: int
    cluster: bool = False
    folder: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="roomcast-redis-")))
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``redis://`` URL of this server."""
        return f"redis://127.0.0.1:{self.port}/0"

    def _arguments(self) -> list[str]:
        arguments = [
            _binary("redis-server"),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.folder),
            "--logfile",
            str(self.folder / "redis.log"),
            # DEBUG SLEEP lets the slow-Redis tests stall the server on purpose.
            "--enable-debug-command",
            "local",
        ]
        if self.cluster:
            arguments += [
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                str(self.folder / "nodes.conf"),
                "--cluster-node-timeout",
                "5000",
            ]
        return arguments

    def start(self, within: float = 10 * UNIT) -> RedisProcess:
        """Start the server (again, on the same port) and wait until it answers.

        Raises:
            RuntimeError: it exited or did not answer in time.
        """
        if self.cluster and self.process is None:
            # A new node starts with no cluster; a restarted one keeps its
            # nodes.conf and so rejoins its cluster with its slots.
            (self.folder / "nodes.conf").unlink(missing_ok=True)
        self.process = subprocess.Popen(
            self._arguments(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server on port {self.port} exited:\n{self.log}")
            if _answers(self.port):
                return self
            time.sleep(0.02 * UNIT)
        self.kill()
        raise RuntimeError(f"redis-server on port {self.port} did not answer:\n{self.log}")

    def kill(self) -> None:
        """SIGKILL the server and wait for it (nothing is saved: it keeps no data)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self) -> None:
        """Stop the server and remove its folder."""
        self.kill()
        shutil.rmtree(self.folder, ignore_errors=True)

    @property
    def log(self) -> str:
        """What the server logged so far."""
        path = self.folder / "redis.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def command(self, *args: str) -> str:
        """Run one command against this server with ``redis-cli``."""
        return command(self.port, *args)


def start_redis(*, cluster: bool = False) -> RedisProcess:
    """A new `redis-server` on a free port, answering.

    Another process may take the port between the probe and the start; then
    a new port is tried.
    """
    error: Exception | None = None
    for _ in range(_START_ATTEMPTS):
        server = RedisProcess(free_port(cluster=cluster), cluster=cluster)
        try:
            return server.start()
        except RuntimeError as failed:
            server.stop()
            error = failed
    raise RuntimeError(f"could not start redis-server: {error}")


@dataclass
class RedisClusterProcesses(_Stopped):
    """A Redis Cluster of masters with no replicas, all slots assigned; ``with`` it to stop it."""

    nodes: Sequence[RedisProcess]

    @property
    def url(self) -> str:
        """``redis+cluster://`` URL naming every node."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)

    def stop(self) -> None:
        """Stop every node."""
        for node in self.nodes:
            node.stop()


def cluster_ready(nodes: Sequence[RedisProcess]) -> bool:
    for node in nodes:
        try:
            info = node.command("CLUSTER", "INFO")
        except subprocess.SubprocessError:
            return False
        if "cluster_state:ok" not in info or "cluster_slots_ok:16384" not in info:
            return False
        # Every node must know every other, or it answers MOVED to nowhere.
        if node.command("CLUSTER", "NODES").count("master") < len(nodes):
            return False
    return True


def start_cluster(masters: int = 3, within: float = 30 * UNIT) -> RedisClusterProcesses:
    """Start ``masters`` cluster-enabled servers and join them with `redis-cli --cluster create`.

    Raises:
        RuntimeError: the cluster did not form in time.
    """
    nodes = [start_redis(cluster=True) for _ in range(masters)]
    cluster = RedisClusterProcesses(nodes)
    try:
        subprocess.run(
            [
                _binary("redis-cli"),
                "--cluster",
                "create",
                *(f"127.0.0.1:{n.port}" for n in nodes),
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            capture_output=True,
            text=True,
            timeout=within,
            check=True,
        )
        deadline = time.monotonic() + within
        while not cluster_ready(nodes):
            if time.monotonic() > deadline:
                raise RuntimeError("the Redis cluster did not become ready")
            time.sleep(0.1 * UNIT)
    except (subprocess.SubprocessError, RuntimeError) as error:
        cluster.stop()
        raise RuntimeError(f"could not form a Redis cluster: {error}") from error
    return cluster
