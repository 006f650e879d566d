"""The gRPC shell: servicers that translate messages and await the node."""

from .admin import AdminServicer
from .realtime import RealtimeServicer, add_realtime_service

__all__ = ["AdminServicer", "RealtimeServicer", "add_realtime_service"]
