"""Server reflection that serves the .proto documentation along with the types.

The generated ``_pb2`` modules embed descriptors without comments, and the
protobuf runtime drops source info when it re-serialises a descriptor, so
stock reflection makes ``grpcurl describe`` show bare signatures. Here the
reflection service gets a pool whose file descriptors serialise from the
descriptor set that ``scripts/gen-proto`` writes with
``--include_source_info``: operators read the API's comments in grpcurl.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

import grpc
from google.protobuf import descriptor, descriptor_pb2, descriptor_pool
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection, reflection_pb2

__all__ = ["enable_reflection"]


class _DocumentedFile:
    """A file descriptor that serialises with its source comments."""

    def __init__(self, file: descriptor.FileDescriptor, protos: dict[str, bytes]) -> None:
        self._file = file
        self._protos = protos
        self.name = file.name

    @property
    def dependencies(self) -> list[_DocumentedFile]:
        return [_DocumentedFile(d, self._protos) for d in self._file.dependencies]

    def CopyToProto(self, proto: descriptor_pb2.FileDescriptorProto) -> None:  # noqa: N802
        documented = self._protos.get(self.name)
        if documented is None:
            self._file.CopyToProto(proto)
        else:
            proto.MergeFromString(documented)


class _DocumentedPool:
    """The lookups the reflection service makes, answered with documented files."""

    def __init__(self, pool: descriptor_pool.DescriptorPool, protos: dict[str, bytes]) -> None:
        self._pool = pool
        self._protos = protos

    def FindFileByName(self, name: str) -> _DocumentedFile:  # noqa: N802
        return _DocumentedFile(self._pool.FindFileByName(name), self._protos)

    def FindFileContainingSymbol(self, symbol: str) -> _DocumentedFile:  # noqa: N802
        return _DocumentedFile(self._pool.FindFileContainingSymbol(symbol), self._protos)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pool, name)


def _documented_pool() -> _DocumentedPool:
    data = resources.files("roomcast.v1").joinpath("descriptors.binpb").read_bytes()
    pool = descriptor_pool.DescriptorPool()
    protos: dict[str, bytes] = {}
    for file in descriptor_pb2.FileDescriptorSet.FromString(data).file:
        pool.Add(file)
        protos[file.name] = file.SerializeToString()
    for module in (health_pb2, reflection_pb2):
        proto = descriptor_pb2.FileDescriptorProto()
        module.DESCRIPTOR.CopyToProto(proto)
        pool.Add(proto)
    return _DocumentedPool(pool, protos)


def enable_reflection(service_names: tuple[str, ...], server: grpc.aio.Server) -> None:
    """Serve reflection for ``service_names`` (and itself) on ``server``."""
    reflection.enable_server_reflection(
        (*service_names, reflection.SERVICE_NAME),
        server,
        pool=_documented_pool(),
    )
