"""The aiohttp app factory: one app from a Platform and the ServiceParts it runs.

`loraserve dev` passes every part (one port, one /healthz, one /metrics);
`loraserve serve SERVICE` passes one.
"""
from __future__ import annotations

import asyncio

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from shared.contracts.openapi import document as openapi_document
from shared.http import management_limits
from shared.http.keys import PLATFORM, REQUEST_ID, RESPONSE_HEADERS
from shared.http.middleware import (
    PUBLIC_PREFIX,
    auth_middleware,
    error_middleware,
    metrics_middleware,
    request_id_middleware,
)
from shared.http.slow_clients import body_idle_middleware
from shared.logging import get_logger
from shared.platform import Platform, ServicePart

log = get_logger("app")
PARTS = web.AppKey("service_parts", list)
READINESS_TIMEOUT = 3.0


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def _check(name: str, check) -> tuple[str, bool]:
    try:
        return name, bool(await asyncio.wait_for(check(), READINESS_TIMEOUT))
    except Exception:  # noqa: BLE001 -- whatever stops a dependency answering makes it not ready
        return name, False


async def readyz(request: web.Request) -> web.Response:
    platform = request.app[PLATFORM]
    checks = {
        "bus": platform.bus.ready, "documents": platform.documents.ready,
        "blobs": platform.blobs.ready, "identity": platform.identity.ready,
    }
    for part in request.app[PARTS]:
        for i, check in enumerate(part.readiness):
            checks[f"{part.name}.{i}"] = check
    results = dict(await asyncio.gather(*(_check(n, c) for n, c in checks.items())))
    ok = all(results.values())
    return web.json_response({"status": "ready" if ok else "not_ready", "checks": results}, status=200 if ok else 503)


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(openapi_document())


async def metrics(request: web.Request) -> web.Response:
    return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})


async def stamp_request_id(request: web.Request, response: web.StreamResponse) -> None:
    """Every response carries x-request-id, streamed ones too (their headers go out before the middleware sees them)."""
    rid = request.get(REQUEST_ID)
    if rid and "x-request-id" not in response.headers:
        response.headers["x-request-id"] = rid


async def stamp_response_headers(request: web.Request, response: web.StreamResponse) -> None:
    """What a handler put in RESPONSE_HEADERS goes on whatever answers it: a body, a stream or an error."""
    response.headers.update(request.get(RESPONSE_HEADERS) or {})


def platform_lifecycle(platform: Platform):
    async def ctx(app: web.Application):
        await platform.bus.start()
        await platform.blobs.start()
        log.info("platform started", source=platform.source)
        yield
        await platform.bus.close()
        await platform.blobs.close()
        await platform.documents.close()
    return ctx


def checks_api_keys(parts: list[ServicePart]) -> bool:
    """Whether any public route is served: only those authenticate API keys (and need the pepper)."""
    return any(getattr(route, "path", "").startswith(PUBLIC_PREFIX) for part in parts for route in part.routes)


def create_app(platform: Platform, parts: list[ServicePart]) -> web.Application:
    """The app serving `parts`; in production, refuses (UnsafeSettings) to build with a guessable secret."""
    platform.settings.require_safe(key_pepper=checks_api_keys(parts))
    app = web.Application(
        middlewares=[request_id_middleware, metrics_middleware, error_middleware, auth_middleware,
                     management_limits.management_limits_middleware, body_idle_middleware],
        client_max_size=platform.settings.max_json_body_bytes,
    )
    app[PLATFORM] = platform
    app[PARTS] = parts
    app.on_response_prepare.append(stamp_request_id)
    app.on_response_prepare.append(stamp_response_headers)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/openapi.json", openapi, allow_head=False)
    app.cleanup_ctx.append(platform_lifecycle(platform))
    if checks_api_keys(parts):
        management_limits.install(app, platform)
    for part in parts:
        app.router.add_routes(part.routes)
        app.cleanup_ctx.extend(part.cleanup_ctx)
        app.on_shutdown.extend(part.on_shutdown)
    return app
