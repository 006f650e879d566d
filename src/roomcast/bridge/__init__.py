"""The WebSocket bridge: the JSON room protocol of docs/protocol.md.

``frames`` (pure parsing and building), ``limits`` (pure rate limits and
cursor coalescing), ``connection`` (the shared-bytes write path),
``session`` (one client's frames), ``http`` (routes on the same port) and
``server`` (the websockets server and each connection's life).
"""

from .server import Bridge

__all__ = ["Bridge"]
