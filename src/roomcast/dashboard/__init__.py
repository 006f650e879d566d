"""The performance dashboard: one static page served at ``/performance-dashboard``.

Plain HTML, CSS and an ES module, shipped in the package with no build
step; the page follows the platform's rooms through the WebSocket bridge
with ``roomcast.js`` (the browser client in ``clients/js``, linked here so
there is one copy of it).
"""

from __future__ import annotations

from importlib import resources

from ..bridge.http import Page, Routes

__all__ = ["ASSETS", "PATH", "add_dashboard", "asset"]

PATH = "/performance-dashboard"
# Only this page's own files and the bridge may be reached from it; the token
# it holds never leaves for another origin.
SECURITY_HEADERS = (
    (
        "Content-Security-Policy",
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self' ws: wss:; "
        "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    ),
    ("Referrer-Policy", "no-referrer"),
    ("X-Content-Type-Options", "nosniff"),
)
# File → content type; the page is index.html at PATH itself.
ASSETS = {
    "index.html": "text/html; charset=utf-8",
    "dashboard.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
    "roomcast.js": "text/javascript; charset=utf-8",
}


def asset(name: str) -> bytes:
    """The bytes of one of :data:`ASSETS`.

    Raises:
        KeyError: not an asset of the dashboard.
    """
    if name not in ASSETS:
        raise KeyError(name)
    return resources.files(__name__).joinpath(name).read_bytes()


def add_dashboard(routes: Routes) -> None:
    """Serve the page at :data:`PATH` and its files under it."""
    for name, content_type in ASSETS.items():
        path = PATH if name == "index.html" else f"{PATH}/{name}"

        async def serve(_: object, name: str = name, content_type: str = content_type) -> Page:
            return Page(200, asset(name), content_type, SECURITY_HEADERS)

        routes.add(path, serve)
