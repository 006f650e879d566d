"""``roomcast serve --workers N``: N node processes on one machine, one pair of ports.

Python runs one event loop per process, so a machine's cores are used by
running several nodes on it. Each worker is a full node (its own node id)
that binds the same gRPC and HTTP ports with ``SO_REUSEPORT``; the kernel
spreads new connections across them, and the shared broker (Redis) makes
them one platform, exactly as nodes on several machines.

The parent only supervises: it starts the workers, says ready once all
are, restarts a worker that dies (with backoff, counted in its log), and
passes SIGTERM/SIGINT on so every worker drains.
"""

from __future__ import annotations

import logging
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .config import Settings, worker_environment
from .errors import ConfigError

__all__ = ["WORKER_READY", "run_workers"]

log = logging.getLogger(__name__)

# A worker's ready line (the parent prints the one line callers wait for).
WORKER_READY = "roomcast worker ready:"
RESTART_BACKOFF = (0.5, 1.0, 2.0, 5.0)
STARTUP_TIMEOUT = 60.0


def _free_port(host: str) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


@dataclass
class _Worker:
    index: int
    process: subprocess.Popen[str]
    restarts: int = 0


def run_workers(
    settings: Settings, argv: Sequence[str], on_ready: Callable[[int, int], None]
) -> int:
    """Run ``settings.workers`` node processes until SIGTERM/SIGINT.

    Args:
        settings: the parent's settings (workers > 1, a shared broker).
        argv: the ``roomcast serve`` arguments, passed on to every worker.
        on_ready: called with the gRPC and HTTP ports once every worker is ready.

    Returns:
        The exit status: 0 after a clean drain.

    Raises:
        ConfigError: the broker is the in-process memory broker.
    """
    if settings.broker.startswith("memory:"):
        raise ConfigError(
            f"--workers {settings.workers} needs a shared broker (--broker redis://...): "
            "the memory broker keeps rooms inside one process"
        )
    grpc_port = settings.grpc_port or _free_port(settings.host)
    http_port = settings.http_port or _free_port(settings.host)
    stopping = threading.Event()
    ready = threading.Semaphore(0)
    lock = threading.Lock()

    def start(index: int) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            [sys.executable, "-m", "roomcast", "serve", *_without_ports(argv)],
            stdout=subprocess.PIPE,
            stderr=None,
            text=True,
            env=worker_environment(settings, index, grpc_port, http_port),
        )
        threading.Thread(target=_forward, args=(process, ready), daemon=True).start()
        return process

    workers = [_Worker(i, start(i)) for i in range(settings.workers)]

    def stop(signum: int, _: object) -> None:
        stopping.set()
        with lock:
            for worker in workers:
                if worker.process.poll() is None:
                    worker.process.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    deadline = time.monotonic() + STARTUP_TIMEOUT
    for _ in workers:
        if not ready.acquire(timeout=max(0.0, deadline - time.monotonic())):
            stop(signal.SIGTERM, None)
            raise ConfigError("the workers did not start (see their output above)")
    on_ready(grpc_port, http_port)
    while not stopping.is_set():
        time.sleep(0.2)
        with lock:
            for worker in workers:
                code = worker.process.poll()
                if code is None or stopping.is_set():
                    continue
                delay = RESTART_BACKOFF[min(worker.restarts, len(RESTART_BACKOFF) - 1)]
                worker.restarts += 1
                log.error(
                    "worker %d exited with %d; restarting in %.1fs (restart %d)",
                    worker.index,
                    code,
                    delay,
                    worker.restarts,
                )
                time.sleep(delay)
                worker.process = start(worker.index)
    codes = [worker.process.wait() for worker in workers]
    return 0 if all(code == 0 for code in codes) else 1


def _without_ports(argv: Sequence[str]) -> list[str]:
    """``argv`` minus the options the parent decides for its workers."""
    dropped = {"--grpc-port", "--http-port", "--workers"}
    kept: list[str] = []
    skip = False
    for argument in argv:
        if skip:
            skip = False
            continue
        name = argument.split("=", 1)[0]
        if name in dropped:
            skip = "=" not in argument
            continue
        kept.append(argument)
    return kept


def _forward(process: subprocess.Popen[str], ready: threading.Semaphore) -> None:
    """Pass a worker's output on, and note its ready line."""
    assert process.stdout is not None
    for line in process.stdout:
        sys.stdout.write(line)
        sys.stdout.flush()
        if line.startswith(WORKER_READY):
            ready.release()
