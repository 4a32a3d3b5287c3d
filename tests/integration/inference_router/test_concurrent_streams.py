"""Concurrent streams per org: `GET /v1/events` and streamed completions share one pool per org (one app here,
as in `loraserve dev`; Redis for replicas). Over it → 429 in the API's envelope with retry-after; a stream that
ends frees its place; a lease left by a crashed replica stops counting after its TTL; an override raises one
org's limit; a lease store outage fails open or closed."""
from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass, field

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from services.inference_router.app import part_for as router_part
from services.inference_router.app import router_from
from services.registry.app import part_for as registry_part
from services.registry.app import registry_from
from shared.composition import build_platform
from shared.contracts.messages import GenerateResponse, ResponseDelta, ResponseFinished
from shared.http.app import create_app
from shared.platform import Platform
from shared.ratelimit import Pool
from shared.ratelimit.redis_leases import RedisLeases
from shared.settings import Settings
from tests.integration.inference_router.harness import TINY, WorkerDouble, default_loras, echo_text, wait_for

REDIS_URL = "redis://127.0.0.1:6379/0"
TTL = 0.6
SERVICE_TOKEN = "streams-test-token"
HELLO = [{"role": "user", "content": "hello"}]
STREAMED = {
    "/v1/chat/completions": {"model": TINY, "messages": HELLO, "stream": True},
    "/v1/responses": {"model": TINY, "input": "hello", "stream": True},
    "/v1/messages": {"model": TINY, "max_tokens": 8, "messages": HELLO, "stream": True},
}


@dataclass
class GatedWorker(WorkerDouble):
    """Sends each job's first reply at once (the stream opens) and its end only once the test opens the gate."""

    gate: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, delivery) -> None:
        job = GenerateResponse.from_event(delivery.event)
        self.jobs.append(job)
        text = echo_text(job)
        await delivery.reply(ResponseDelta(response_id=job.response_id, index=0, text=text), source=self.source)
        await self.gate.wait()
        await delivery.reply(ResponseFinished(response_id=job.response_id, output_text=text, finish_reason="stop",
                                              prompt_tokens=1, completion_tokens=1), source=self.source)

    async def stop(self) -> None:
        self.gate.set()
        await super().stop()


@dataclass
class Stack:
    platform: Platform
    server: TestServer
    worker: GatedWorker
    keys: dict[str, str]
    session: aiohttp.ClientSession
    opened: list[aiohttp.ClientResponse] = field(default_factory=list)

    def headers(self, org: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[org]}", "x-api-key": self.keys[org]}

    async def request(self, path: str, org: str = "org-a") -> aiohttp.ClientResponse:
        url = str(self.server.make_url(path))
        if path == "/v1/events":
            return await self.session.get(url, headers=self.headers(org))
        return await self.session.post(url, json=STREAMED[path], headers=self.headers(org))

    async def open(self, path: str, org: str = "org-a") -> aiohttp.ClientResponse:
        """A stream that answered 200 and sent its first bytes (so it holds its place), left open."""
        response = await self.request(path, org)
        assert response.status == 200, await response.text()
        assert await asyncio.wait_for(response.content.readline(), 10)
        self.opened.append(response)
        return response

    async def close(self) -> None:
        for response in self.opened:
            response.close()
        await self.session.close()
        await self.worker.stop()
        await self.server.close()


async def start(tmp_path, leases=None, **options) -> Stack:
    """The registry and the router in one app over one Platform (as `loraserve dev` runs them)."""
    settings = Settings(data_dir=tmp_path, sync_request_timeout_seconds=5, service_token=SERVICE_TOKEN,
                        **{"ratelimit_concurrent_streams": 1, "lease_ttl_seconds": TTL, **options})
    platform = build_platform(settings, source="test/streams")
    if leases is not None:
        platform.leases = leases
    router, loras = router_from(platform), default_loras()

    async def listing() -> list[dict]:
        return list(loras.values())

    parts = [registry_part(registry_from(platform), platform, heartbeat_seconds=0.1),
             router_part(router, lambda session: listing)]
    server = TestServer(create_app(platform, parts))
    await server.start_server()
    keys = {org: (await platform.identity.create(org))[1] for org in ("org-a", "org-b")}
    worker = GatedWorker(platform.bus)
    await worker.start()
    await wait_for(lambda: router.loras.model.loaded)
    return Stack(platform, server, worker, keys, aiohttp.ClientSession())


@pytest.fixture
async def stack(tmp_path):
    started = await start(tmp_path)
    yield started
    await started.close()


async def streams_held(platform: Platform, org: str) -> int:
    """How many of the org's streams the lease store counts (a weightless probe, released at once)."""
    probe = Pool("streams", f"org:{org}:streams", 2**62, 0)
    decision = await platform.leases.acquire([probe], "probe", 1)
    await platform.leases.release([probe.key], "probe")
    return decision.used[0]


async def until_held(platform: Platform, org: str, count: int) -> None:
    for _ in range(500):  # a safety net of ~10 s, never an assertion about speed
        if await streams_held(platform, org) == count:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{org} never held {count} streams")


async def refused(response: aiohttp.ClientResponse, used: int = 1, limit: int = 1) -> str:
    """The 429's message, after checking its envelope and headers."""
    assert response.status == 429, await response.text()
    assert response.headers["retry-after"] == "1" and response.headers["retry-after-ms"] == "1000"
    body = json.loads(await response.text())
    if response.url.path == "/v1/messages":
        assert body["type"] == "error" and body["error"]["type"] == "rate_limit_error"
    else:
        assert body["error"]["type"] == "concurrent_streams" and body["error"]["code"] == "rate_limit_exceeded"
    message = body["error"]["message"]
    assert f"Too many concurrent streams for your organization: {used} of {limit} open." in message
    return message


@pytest.mark.parametrize("first", ["/v1/chat/completions", "/v1/events"])
async def test_over_the_limit_every_stream_of_the_org_is_a_429_in_its_apis_envelope(stack, first):
    await stack.open(first)
    for path in ["/v1/events", *STREAMED]:
        await refused(await stack.request(path))
    await stack.open("/v1/chat/completions", org="org-b")  # another org is never affected
    plain = asyncio.create_task(stack.session.post(str(stack.server.make_url("/v1/chat/completions")),
                                                   json={"model": TINY, "messages": HELLO},
                                                   headers=stack.headers("org-a")))
    # an unstreamed answer needs no stream; the refused streams published no job
    await wait_for(lambda: len(stack.worker.jobs) == (2 if first == "/v1/events" else 3))
    stack.worker.gate.set()  # lets every job finish
    answer = await plain
    assert answer.status == 200 and (await answer.json())["choices"][0]["message"]["content"] == "echo: hello"


async def test_a_stream_that_ended_frees_its_place(stack):
    chat = await stack.open("/v1/chat/completions")
    stack.worker.gate.set()
    assert (await chat.text()).endswith("data: [DONE]\n\n")
    await until_held(stack.platform, "org-a", 0)
    await stack.open("/v1/messages")


async def test_an_events_stream_the_client_left_frees_its_place(stack):
    events = await stack.open("/v1/events")
    await refused(await stack.request("/v1/events"))
    events.close()
    await until_held(stack.platform, "org-a", 0)  # the next heartbeat finds the client gone
    await stack.open("/v1/events")


async def test_a_held_stream_keeps_its_place_past_the_ttl(stack):
    await stack.open("/v1/events")
    await asyncio.sleep(TTL * 2)  # renewed every third of the TTL meanwhile
    await refused(await stack.request("/v1/chat/completions"))


async def test_a_crashed_replicas_lease_stops_counting_after_its_ttl(stack):
    crashed = Pool("streams", "org:org-a:streams", 1)
    assert (await stack.platform.leases.acquire([crashed], "crashed-replica", TTL)).granted  # never renewed
    await refused(await stack.request("/v1/events"))
    await asyncio.sleep(TTL + 0.1)
    await stack.open("/v1/events")


async def test_an_override_raises_the_limit_of_one_org_only(stack):
    override = await stack.session.put(str(stack.server.make_url("/internal/v1/orgs/org-a/limits")),
                                       json={"concurrent_streams": 2}, headers={"x-service-token": SERVICE_TOKEN})
    assert override.status == 200 and (await override.json())["effective"]["concurrent_streams"] == 2
    await stack.open("/v1/events")
    await stack.open("/v1/responses")
    await refused(await stack.request("/v1/chat/completions"), used=2, limit=2)
    await stack.open("/v1/events", org="org-b")
    await refused(await stack.request("/v1/events", org="org-b"))


async def test_two_replicas_sharing_redis_share_the_orgs_streams(tmp_path):
    prefix = f"test:{uuid.uuid4().hex}:"
    stacks = [await start(tmp_path / str(i), leases=RedisLeases(REDIS_URL, prefix=prefix)) for i in range(2)]
    crashed = RedisLeases(REDIS_URL, prefix=prefix)
    try:
        await stacks[0].open("/v1/events")
        await refused(await stacks[1].request("/v1/chat/completions"))
        await stacks[1].open("/v1/events", org="org-b")
        stacks[0].opened.pop().close()
        await until_held(stacks[1].platform, "org-a", 0)
        assert (await crashed.acquire([Pool("streams", "org:org-a:streams", 1)], "crashed-replica", TTL)).granted
        await refused(await stacks[1].request("/v1/events"))
        await asyncio.sleep(TTL + 0.1)  # expired by Redis's clock, nobody released it
        await stacks[1].open("/v1/messages")
    finally:
        await crashed.close()
        for stack in stacks:
            await stack.close()
            await stack.platform.leases.close()


@pytest.mark.parametrize("fail_open", [True, False])
async def test_a_lease_store_outage_fails_open_or_closed_never_500(tmp_path, fail_open):
    stack = await start(tmp_path, leases=RedisLeases("redis://127.0.0.1:1/0", timeout=0.2),
                        ratelimit_fail_open=fail_open)
    try:
        for path in ["/v1/events", *STREAMED]:
            if fail_open:
                await stack.open(path)
                continue
            response = await stack.request(path)
            assert response.status == 503 and response.headers["retry-after"] == "1"
            error = (await response.json())["error"]
            if path == "/v1/messages":
                assert error["type"] == "overloaded_error"
            else:
                assert error["code"] == "rate_limiter_unavailable"
    finally:
        await stack.close()
