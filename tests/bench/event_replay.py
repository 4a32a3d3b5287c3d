"""The SSE replay part of bench_events: `count` file.created events of one org published on the bus while a client
follows GET /v1/events live (the baseline), then GET /v1/events?after=0 replaying them from the registry's log."""
from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter

import aiohttp

from shared.bus.rabbitmq import RabbitBus
from shared.contracts import topology as t
from shared.contracts.cloudevents import CloudEvent
from shared.contracts.messages import FileCreated
from tests.bench.common import auth

REPLAY_ORG = "org-replay"
CONCURRENCY = 32
WAIT_SECONDS = 300.0  # a hang guard: a live stream that shows nothing new for this long has stalled
REPLAY_STALL_SECONDS = 30.0


async def publish(bus: RabbitBus, event: CloudEvent) -> None:
    await bus.publish_event(event, exchange=t.EVENTS, routing_key=t.event_key(REPLAY_ORG, event.type))


def file_event() -> CloudEvent:
    file = {"id": f"file-{uuid.uuid4().hex}", "object": "file", "bytes": 1, "created_at": int(time.time()),
            "filename": "adapter_config.json", "purpose": "lora", "status": "processed"}
    return FileCreated(org_id=REPLAY_ORG, file=file).to_event("loraserve/bench")


async def read_stream(response: aiohttp.ClientResponse, wanted: set[str], seen: Counter[str],
                      stall_seconds: float) -> bool:
    """Count the CloudEvent ids of `wanted` the SSE stream carries; True once all came, False on a stall."""
    data: list[str] = []
    while not wanted <= seen.keys():
        try:
            line = await asyncio.wait_for(response.content.readline(), stall_seconds)
        except TimeoutError:
            return False
        if not line:
            return False
        text = line.decode().rstrip("\r\n")
        if text.startswith("data:"):
            data.append(text[5:].strip())
        elif not text and data:
            ident = json.loads("\n".join(data)).get("id")
            if ident in wanted:
                seen[ident] += 1
            data = []
    return True


async def replay_run(bus: RabbitBus, base_url: str, key: str, count: int) -> dict:
    """Live SSE rate of `count` events (the baseline), then the rate of replaying them all from the log."""
    timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        live = await session.get(f"{base_url}/v1/events", headers=auth(key), params={"types": "file.*"})
        assert live.status == 200, await live.text()
        warm = file_event()
        reading = asyncio.create_task(read_stream(live, {warm.id}, Counter(), WAIT_SECONDS))
        await publish(bus, warm)
        assert await reading, "the live stream never showed the warm-up event"
        events = [file_event() for _ in range(count)]
        wanted, live_seen = {e.id for e in events}, Counter()
        reading = asyncio.create_task(read_stream(live, wanted, live_seen, WAIT_SECONDS))
        started = time.monotonic()
        for chunk in range(0, count, CONCURRENCY):
            await asyncio.gather(*(publish(bus, e) for e in events[chunk:chunk + CONCURRENCY]))
        await reading
        live_rate = len(live_seen) / (time.monotonic() - started)
        live.close()
        started, replay_seen = time.monotonic(), Counter()
        replay = await session.get(f"{base_url}/v1/events", headers=auth(key), params={"after": "0"})
        complete = replay.status == 200 and await read_stream(replay, wanted, replay_seen, stall_seconds=REPLAY_STALL_SECONDS)
        elapsed = time.monotonic() - started
        replay.close()
    return {"live_events_per_s": live_rate,
            "replay_events_per_s": len(replay_seen) / elapsed if complete else None,
            "replay_lost": len(wanted - replay_seen.keys()),
            "replay_duplicated": sum(c - 1 for c in replay_seen.values()), "replay_status": replay.status}
