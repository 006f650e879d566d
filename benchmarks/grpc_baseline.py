"""The ceiling grpc.aio itself puts on unary calls on this machine.

Serves ``roomcast.v1.RealtimeService/Publish`` with a bare grpc.aio server
(uvloop, the same options as roomcast) that answers every call with a
constant response, and drives it with h2load exactly as
``grpc_ingress.py`` drives roomcast. The difference between the two
figures is what roomcast's own work costs per call.

    .venv/bin/python benchmarks/grpc_baseline.py [--seconds 10]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import shutil
import sys
import time

import grpc
import psutil
import uvloop
from grpc_ingress import h2load, tick

from roomcast.v1 import realtime_pb2

SERVICE = "roomcast.v1.RealtimeService"


async def _serve(ports: mp.Queue) -> None:
    server = grpc.aio.server()
    response = realtime_pb2.PublishResponse(offset=1, epoch="e", id="i")

    async def publish(request: realtime_pb2.PublishRequest, context: object) -> object:
        return response

    handlers = {
        "Publish": grpc.unary_unary_rpc_method_handler(
            publish,
            request_deserializer=realtime_pb2.PublishRequest.FromString,
            response_serializer=realtime_pb2.PublishResponse.SerializeToString,
        )
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    ports.put(port)
    await server.wait_for_termination()


def serve(ports: mp.Queue) -> None:
    uvloop.run(_serve(ports))


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--in-flight", type=int, default=64)
    args = parser.parse_args()
    if shutil.which("h2load") is None:
        sys.exit("h2load not found: apt-get install nghttp2-client")
    ports: mp.Queue = mp.Queue()
    server = mp.Process(target=serve, args=(ports,), daemon=True)
    server.start()
    port = ports.get(timeout=20)
    process = psutil.Process(server.pid)
    cpu_before = sum(process.cpu_times()[:2])
    started = time.perf_counter()
    # Driven exactly as grpc_ingress.py drives roomcast: same h2load, same event.
    streams = max(1, args.in_flight // 4)
    message = tick().SerializeToString()
    done = h2load(f"127.0.0.1:{port}", "x", "Publish", message, 4, streams, args.seconds)
    wall = time.perf_counter() - started
    cpu = sum(process.cpu_times()[:2]) - cpu_before
    print(
        f"bare grpc.aio, constant response, {args.in_flight} in flight (h2load): "
        f"{done / wall:,.0f} calls/s; server CPU {cpu / wall * 100:.0f}%"
    )
    server.terminate()


if __name__ == "__main__":
    main()
