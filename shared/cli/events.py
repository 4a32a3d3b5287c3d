"""`loraserve events tail`: your org's events as JSON lines, from GET /v1/events.

When the connection drops (or the server restarts) it reconnects with `Last-Event-ID`, the id
of the last event it printed, so nothing is missed and nothing printed twice.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

import aiohttp

from shared.cli.api_client import ApiClient, ApiFailure, SseFrame
from shared.cli.client import _run, _with_conn
from shared.cli.usage import duration_seconds

RETRYABLE_STATUSES = {408, 429, 500, 502, 503, 504}
FIRST_RETRY_SECONDS = 0.5
MAX_RETRY_SECONDS = 10.0
# the server sends a heartbeat every 15 s: a connection silent for this long is dead
STREAM_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=60)


def since_params(text: str) -> dict[str, str]:
    """An event id (`42`: the events after it) or a duration (`90m`, `24h`, `7d`: the events since then)."""
    if text.strip().isdigit():
        return {"after": text.strip()}
    try:
        seconds = duration_seconds(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"'{text}' is neither an event id nor a duration like 90m, 24h or 7d"
                                         ) from None
    return {"since": f"{time.time() - seconds:.3f}"}


def register(sub) -> None:
    events = sub.add_parser("events", help="your org's events")
    tail = _with_conn(events.add_subparsers(dest="events_command", required=True).add_parser(
        "tail", help="print your org's events as JSON lines as they come (GET /v1/events)"))
    tail.add_argument("--since", type=since_params, default={},
                      help="an event id to continue after, or how far back to start (90m, 24h, 7d); "
                           "default: new events only")
    tail.add_argument("--type", help="comma-separated globs over event types, e.g. 'lora.*,file.created'")
    tail.set_defaults(handler=_run(cmd_tail))


def line_of(frame: SseFrame) -> str:
    return json.dumps({"id": int(frame.id or 0), "event": frame.event, "data": json.loads(frame.data)})


def error_of(frame: SseFrame) -> str:
    error = json.loads(frame.data).get("error", {})
    return f"error: {error.get('message')} ({error.get('code')})"


async def cmd_tail(client: ApiClient, args) -> int:
    params = {**args.since, **({"types": args.type} if args.type else {})}
    last_id: str | None = None
    delay = FIRST_RETRY_SECONDS
    while True:
        headers = {"Last-Event-ID": last_id} if last_id else None
        try:
            async for frame in client.sse("/events", params=params, headers=headers, timeout=STREAM_TIMEOUT):
                if frame.event == "error":
                    print(error_of(frame), file=sys.stderr)
                    return 1
                if frame.data:  # else only the id the stream starts from
                    print(line_of(frame), flush=True)
                last_id, delay = frame.id, FIRST_RETRY_SECONDS
            reason = "the server ended the stream"
        except ApiFailure as exc:
            if exc.status not in RETRYABLE_STATUSES:
                raise
            reason = str(exc)
        except (aiohttp.ClientError, TimeoutError, ConnectionError) as exc:
            reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        resume = f"after event {last_id}" if last_id else "from the start"
        print(f"{reason}; reconnecting {resume} in {delay:g}s", file=sys.stderr, flush=True)
        await asyncio.sleep(delay)
        delay = min(delay * 2, MAX_RETRY_SECONDS)
