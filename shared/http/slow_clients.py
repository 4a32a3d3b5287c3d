"""Cutting off a client that stops sending its request body.

aiohttp has no timeout on reading a body: a client that sends half a body and stalls would
hold its handler (and whatever the handler holds: a temp object, a store cursor) forever.
A watchdog per request with a body fails the body's stream once the handler has been waiting
on the client for a whole idle period with no new byte; the handler's read then raises and
the caller gets a 408 envelope, and aiohttp closes the connection.
"""
from __future__ import annotations

import asyncio
import contextlib

from aiohttp import StreamReader, web

from shared.contracts.errors import ApiError
from shared.http.keys import PLATFORM
from shared.logging import get_logger

log = get_logger("http.slow_clients")


class BodyIdleTimeout(TimeoutError):
    """Set on a stalled body's stream: aiohttp's lingering read after the response treats a
    TimeoutError as the end of the connection, which is what a stalled client should get."""


def request_timeout(idle_seconds: float) -> ApiError:
    return ApiError(f"The request body stalled: no data for {idle_seconds:g} seconds", status=408,
                    code="request_timeout", headers={"Connection": "close"})


def _waiting_for_client(content: StreamReader) -> bool:
    # a reader parked on an empty buffer; a full buffer (the handler busy elsewhere) is not the client's fault
    return getattr(content, "_waiter", None) is not None


async def _watch(content: StreamReader, idle_seconds: float) -> None:
    seen = content.total_bytes
    while not content.is_eof() and content.exception() is None:
        await asyncio.sleep(idle_seconds)
        if content.total_bytes == seen and _waiting_for_client(content) and not content.is_eof():
            log.info("request body stalled; cutting the client off", idle_seconds=idle_seconds)
            content.set_exception(BodyIdleTimeout())
            return
        seen = content.total_bytes


@web.middleware
async def body_idle_middleware(request: web.Request, handler):
    if not request.body_exists or request.content.is_eof():
        return await handler(request)
    idle_seconds = request.app[PLATFORM].settings.body_idle_timeout_seconds
    watchdog = asyncio.get_running_loop().create_task(_watch(request.content, idle_seconds))
    try:
        return await handler(request)
    except BodyIdleTimeout:
        raise request_timeout(idle_seconds) from None
    finally:
        watchdog.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watchdog
