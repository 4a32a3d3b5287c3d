"""GET /v1/events: the caller's org's public events as Server-Sent Events.

Each frame is `id: <CloudEvent id>`, `event: <type>`, `data: <CloudEvent JSON>`; an SSE
comment goes out first (the stream is live from then on) and as a heartbeat while idle.
`?types=lora.*,file.created` keeps only matching types (globs over the public types).
A stream holds one of its org's concurrent streams (`shared.ratelimit.concurrency`) while it is open.
"""
from __future__ import annotations

import asyncio

from aiohttp import web

from services.registry.context import Registry
from services.registry.events_hub import EventsHub, matching_types
from shared.contracts.cloudevents import CloudEvent
from shared.contracts.errors import BadRequest, ServiceUnavailable
from shared.contracts.messages import PUBLIC_EVENT_TYPES
from shared.http.keys import REQUEST_ID
from shared.http.requests import org_id
from shared.ratelimit.concurrency import Concurrency

MAX_TYPE_PATTERNS = 16


def requested_types(raw: str | None) -> set[str]:
    if raw is None or not raw.strip():
        return set(PUBLIC_EVENT_TYPES)
    patterns = [p.strip() for p in raw.split(",") if p.strip()]
    if len(patterns) > MAX_TYPE_PATTERNS:
        raise BadRequest(f"types: at most {MAX_TYPE_PATTERNS} patterns", param="types", code="invalid_types")
    unknown = [p for p in patterns if not matching_types([p])]
    if unknown:
        raise BadRequest(f"types: {', '.join(map(repr, unknown))} match no event type; the types are "
                         f"{', '.join(PUBLIC_EVENT_TYPES)}", param="types", code="invalid_types")
    return matching_types(patterns)


def frame(event: CloudEvent) -> bytes:
    data = event.model_dump_json(exclude_none=True)
    return f"id: {event.id}\nevent: {event.type}\ndata: {data}\n\n".encode()


async def stream_events(registry: Registry, heartbeat_seconds: float,
                        request: web.Request) -> web.StreamResponse:
    types = requested_types(request.query.get("types"))
    if registry.hub is None or registry.hub.closing:
        raise ServiceUnavailable("The event stream is not available right now; please retry.",
                                 code="events_unavailable")
    # one of the org's concurrent streams, taken before the 200 and held until the stream ends
    async with Concurrency.serving(request).stream(org_id(request)):
        return await _relay(registry.hub, heartbeat_seconds, request, types)


async def _relay(hub: EventsHub, heartbeat_seconds: float, request: web.Request,
                 types: set[str]) -> web.StreamResponse:
    stream = hub.open(org_id(request), types)
    response = web.StreamResponse(headers={
        "Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no",
        "x-request-id": request.get(REQUEST_ID, ""),
    })
    try:
        await response.prepare(request)
        await response.write(b": connected\n\n")
        while True:
            try:
                event = await asyncio.wait_for(stream.next(), heartbeat_seconds)
            except TimeoutError:
                await response.write(b": heartbeat\n\n")
                continue
            if event is None:
                break
            await response.write(frame(event))
    except ConnectionResetError:
        pass  # the client went away
    finally:
        hub.close(stream)
    return response
