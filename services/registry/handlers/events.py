"""GET /v1/events: the caller's org's public events as Server-Sent Events, replayed from the event log.

Each frame is `id: <log id>`, `event: <type>`, `data: <CloudEvent JSON>`; an SSE comment goes out
first (the stream is live from then on), then a frame with only `id:` (where the stream starts),
and comments as heartbeats while idle. A stream starts after
`Last-Event-ID` (what EventSource sends when it reconnects), else after `?after=<id>`, else with
the first event logged at or after `?since=<unix seconds>`, else with the next new event. It replays
the log from there and then follows it, reading every event from the log, so the ids are the log's
and the seam between replay and live has no gap and no duplicate. A start the log cannot serve
(expired by retention, or an id never given) is one `error` event, whose `id:` is where a
reconnect picks up, and the end of the stream.
`?types=lora.*,file.created` keeps only matching types (globs over the public types).
A stream holds one of its org's concurrent streams (`shared.ratelimit.concurrency`) while it is open.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass

from aiohttp import web
from pymongo.errors import PyMongoError

from services.registry.context import Registry
from services.registry.event_log import Entry, EventLog, Start
from services.registry.events_hub import STREAMED_TYPES, EventsHub, Stream, matching_types
from shared.contracts.errors import BadRequest, ServiceUnavailable
from shared.http.keys import REQUEST_ID
from shared.http.requests import org_id
from shared.logging import get_logger
from shared.ratelimit.concurrency import Concurrency

log = get_logger("registry.events")
MAX_TYPE_PATTERNS = 16
MAX_EVENT_ID = 2**63 - 1
MAX_SINCE = 253402300799  # 9999-12-31T23:59:59Z, the last second a datetime holds
REPLAY_BATCH = 500
LAST_EVENT_ID = "Last-Event-ID"


@dataclass(frozen=True)
class Resume:
    """What the request asked to start from: nothing (new events only), an id, or a time."""

    after: int | None = None
    since: float | None = None
    param: str | None = None


def requested_types(raw: str | None) -> frozenset[str] | None:
    """The types to send; None for all of them."""
    if raw is None or not raw.strip():
        return None
    patterns = [p.strip() for p in raw.split(",") if p.strip()]
    if len(patterns) > MAX_TYPE_PATTERNS:
        raise BadRequest(f"types: at most {MAX_TYPE_PATTERNS} patterns", param="types", code="invalid_types")
    unknown = [p for p in patterns if not matching_types([p])]
    if unknown:
        raise BadRequest(f"types: {', '.join(map(repr, unknown))} match no event type; the types are "
                         f"{', '.join(STREAMED_TYPES)}", param="types", code="invalid_types")
    types = frozenset(matching_types(patterns))
    return None if types == frozenset(STREAMED_TYPES) else types


def _event_id(raw: str, param: str) -> int:
    text = raw.strip()
    if not text.isdigit() or int(text) > MAX_EVENT_ID:
        raise BadRequest(f"{param}: {raw[:64]!r} is not an event id of this stream (a number from an "
                         f"`id:` line)", param=param, code="invalid_event_id")
    return int(text)


def _unix_time(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0 or value > MAX_SINCE:
        raise BadRequest(f"since: {raw[:64]!r} is not a time in unix seconds (0 to {MAX_SINCE})", param="since",
                         code="invalid_since")
    return value


def resume_from(request: web.Request) -> Resume:
    header = request.headers.get(LAST_EVENT_ID, "")
    if header.strip():
        return Resume(after=_event_id(header, LAST_EVENT_ID), param=LAST_EVENT_ID)
    if "after" in request.query:
        return Resume(after=_event_id(request.query["after"], "after"), param="after")
    if "since" in request.query:
        return Resume(since=_unix_time(request.query["since"]), param="since")
    return Resume()


async def starting_point(event_log: EventLog, org: str, resume: Resume) -> Start:
    if resume.after is not None:
        return await event_log.start_after(org, resume.after)
    if resume.since is not None:
        return await event_log.start_since(org, resume.since)
    return Start(await event_log.newest(org))


def frames(entries: list[Entry]) -> bytes:
    return "".join(f"id: {e.seq}\nevent: {e.type}\ndata: {e.event}\n\n" for e in entries).encode()


def error_frame(start: Start, param: str | None) -> bytes:
    body = {"error": {"message": start.message, "type": "invalid_request_error", "param": param,
                      "code": start.error}}
    return f"id: {start.cursor}\nevent: error\ndata: {json.dumps(body)}\n\n".encode()


async def stream_events(registry: Registry, heartbeat_seconds: float,
                        request: web.Request) -> web.StreamResponse:
    types = requested_types(request.query.get("types"))
    resume = resume_from(request)
    hub = registry.hub
    if hub is None or hub.closing:
        raise ServiceUnavailable("The event stream is not available right now; please retry.",
                                 code="events_unavailable")
    # one of the org's concurrent streams, taken before the 200 and held until the stream ends
    async with Concurrency.serving(request).stream(org_id(request)):
        try:
            start = await starting_point(hub.log, org_id(request), resume)
        except PyMongoError:
            log.warning("events.log_unavailable", exc_info=True)
            raise ServiceUnavailable("The event log is not available right now; please retry.",
                                     code="events_unavailable") from None
        return await _relay(hub, heartbeat_seconds, request, types, start, resume.param)


async def _relay(hub: EventsHub, heartbeat_seconds: float, request: web.Request, types: frozenset[str] | None,
                 start: Start, param: str | None) -> web.StreamResponse:
    response = web.StreamResponse(headers={
        "Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no",
        "x-request-id": request.get(REQUEST_ID, ""),
    })
    stream = hub.open(org_id(request), types, start.cursor)
    try:
        await response.prepare(request)
        await response.write(b": connected\n\n")
        if start.error is not None:
            await response.write(error_frame(start, param))
        else:
            # where the stream starts, as an id with no event: EventSource and the CLI resume from it
            # even when the connection drops before the first event
            await response.write(f"id: {start.cursor}\n\n".encode())
            await _follow(hub, stream, response, heartbeat_seconds)
    except ConnectionResetError:
        pass  # the client went away
    except PyMongoError as exc:
        # the client reconnects with Last-Event-ID and loses nothing
        log.warning("events.stream_ended_by_store", error=str(exc))
    finally:
        hub.close(stream)
    return response


async def _follow(hub: EventsHub, stream: Stream, response: web.StreamResponse,
                  heartbeat_seconds: float) -> None:
    """Send the log after the stream's cursor, then each new entry as the log grows, until the hub closes."""
    last_write = time.monotonic()
    while not stream.ended:
        entries, seen = await hub.read(stream, REPLAY_BATCH)
        if entries:
            await response.write(frames(entries))
            last_write = time.monotonic()
        stream.cursor = max(stream.cursor, seen)
        if entries:
            continue
        idle = time.monotonic() - last_write
        if idle >= heartbeat_seconds:
            await response.write(b": heartbeat\n\n")
            last_write, idle = time.monotonic(), 0.0
        await hub.wait(stream, heartbeat_seconds - idle)
