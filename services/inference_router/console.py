"""The web console: the static files under console_static/ served at /console.

The files are public: the console holds no secret and no session. The browser keeps the user's API key
in sessionStorage and calls the public /v1 API with it, like any other client. Every answer under
/console (files, redirect, 404, 405) carries a strict Content-Security-Policy: scripts, styles and
connections from this origin only, no inline script or style, no framing, and Trusted Types required,
so that even a mistaken `innerHTML` with API data throws instead of running anything.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from aiohttp import web

STATIC_DIR = Path(__file__).with_name("console_static")
PREFIX = "/console"
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".txt": "text/plain; charset=utf-8",
}
CSP_DIRECTIVES = (
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self'",
    "font-src 'self'",
    "connect-src 'self'",
    "manifest-src 'self'",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
    "object-src 'none'",
    "require-trusted-types-for 'script'",
    "trusted-types 'none'",
)
CONTENT_SECURITY_POLICY = "; ".join(CSP_DIRECTIVES)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}


@dataclass(frozen=True)
class Asset:
    body: bytes
    content_type: str
    etag: str


@cache
def assets() -> dict[str, Asset]:
    """Every servable file by its path under /console/, read once: nothing outside this map is ever served."""
    found = {}
    for path in sorted(STATIC_DIR.rglob("*")):
        content_type = CONTENT_TYPES.get(path.suffix)
        if path.is_file() and content_type:
            body = path.read_bytes()
            found[path.relative_to(STATIC_DIR).as_posix()] = Asset(
                body, content_type, '"' + hashlib.sha256(body).hexdigest()[:32] + '"')
    return found


def _plain(status: int, text: str, **headers: str) -> web.Response:
    return web.Response(status=status, text=text, content_type="text/plain",
                        headers={**SECURITY_HEADERS, **headers})


async def redirect_to_index(request: web.Request) -> web.Response:
    return web.Response(status=308, headers={**SECURITY_HEADERS, "Location": PREFIX + "/"})


async def serve_file(request: web.Request) -> web.Response:
    if request.method not in ("GET", "HEAD"):
        return _plain(405, "Method not allowed\n", Allow="GET, HEAD")
    asset = assets().get(request.match_info["path"] or "index.html")
    if asset is None:
        return _plain(404, "Not found\n")
    # revalidated on every load, so a new release is picked up at once; unchanged files answer 304
    headers = {**SECURITY_HEADERS, "Cache-Control": "no-cache", "ETag": asset.etag}
    if request.headers.get("If-None-Match") == asset.etag:
        return web.Response(status=304, headers=headers)
    return web.Response(body=asset.body, headers={**headers, "Content-Type": asset.content_type})


def console_routes() -> list[web.AbstractRouteDef]:
    return [
        web.get(PREFIX, redirect_to_index),
        web.route("*", PREFIX + "/{path:.*}", serve_file),
    ]
