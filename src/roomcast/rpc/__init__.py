"""The gRPC shell: servicers that translate messages and await the node."""

from .admin import AdminServicer, add_admin_service
from .realtime import RealtimeServicer, add_realtime_service

__all__ = ["AdminServicer", "RealtimeServicer", "add_admin_service", "add_realtime_service"]
