"""Plain HTTP on the WebSocket port, through websockets' ``process_request`` hook.

The port answers a few GET routes (``/healthz``, ``/readyz``, and what later
parts of the server add) and upgrades ``/ws`` to a WebSocket; anything else
is 404. No second web framework for a handful of routes.
"""

from __future__ import annotations

import http
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from http.cookies import CookieError, SimpleCookie
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

__all__ = ["TOKEN_COOKIE", "WS_PATH", "Page", "Routes", "token_from_request"]

WS_PATH = "/ws"
TOKEN_COOKIE = "roomcast_token"


@dataclass(frozen=True, slots=True)
class Page:
    """What a route answers."""

    status: int
    body: bytes
    content_type: str = "text/plain; charset=utf-8"
    headers: tuple[tuple[str, str], ...] = ()


Route = Callable[[Request], Awaitable[Page]]


class Routes:
    """GET routes served beside the WebSocket endpoint."""

    def __init__(self) -> None:
        self._routes: dict[str, Route] = {}

    def add(self, path: str, route: Route) -> None:
        """Serve ``route`` at ``path`` (exact match, query ignored)."""
        self._routes[path] = route

    async def process_request(
        self, connection: ServerConnection, request: Request
    ) -> Response | None:
        """websockets' hook: answer a route, let ``/ws`` upgrade, 404 the rest."""
        path = urlsplit(request.path).path
        if path == WS_PATH:
            return None
        route = self._routes.get(path)
        page = Page(404, b"not found\n") if route is None else await route(request)
        status = http.HTTPStatus(page.status)
        headers = Headers(
            [
                ("Content-Type", page.content_type),
                ("Content-Length", str(len(page.body))),
                ("Cache-Control", "no-store"),
                ("Connection", "close"),
                *page.headers,
            ]
        )
        return Response(status.value, status.phrase, headers, page.body)


def token_from_request(request: Request) -> str | None:
    """A token given with the upgrade request: ``?token=``, else the ``roomcast_token`` cookie.

    The first frame (``auth``) is the preferred way; it keeps tokens out of
    URLs and access logs.
    """
    tokens = parse_qs(urlsplit(request.path).query).get("token")
    if tokens and tokens[0]:
        return tokens[0]
    cookie_header = request.headers.get("Cookie")
    if cookie_header:
        cookies: SimpleCookie = SimpleCookie()
        try:
            cookies.load(cookie_header)
        except CookieError:
            return None
        morsel = cookies.get(TOKEN_COOKIE)
        if morsel is not None and morsel.value:
            return morsel.value
    return None
