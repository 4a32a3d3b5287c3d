"""Concurrent uploads and upload bytes in flight per org: every request that sends file bytes (`POST /v1/files`,
`POST /v1/uploads/{id}/parts`) holds one upload and its Content-Length while it is received. Over either → 429
naming the limit, with retry-after; one finishing lets the next in; an override raises one org's limit; another
org is never affected; a lease store outage fails open or closed."""
from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass

import aiohttp
import openai
import pytest
from multidict import CIMultiDict

from shared.cli.main import main
from shared.ratelimit import Pool
from shared.ratelimit.redis_leases import RedisLeases
from tests.integration.file_ingest.conftest import MiB

KiB = 1024


class HeldBody:
    """A multipart body sent but for its last bytes, which go only once the test calls `finish()`."""

    def __init__(self, file_field: str, data: bytes, **fields: str):
        self.boundary = uuid.uuid4().hex
        head = "".join(f'--{self.boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
                       for name, value in fields.items())
        head += (f'--{self.boundary}\r\nContent-Disposition: form-data; name="{file_field}"; filename="x.bin"\r\n'
                 "Content-Type: application/octet-stream\r\n\r\n")
        body = head.encode() + data + f"\r\n--{self.boundary}--\r\n".encode()
        self.first, self.rest, self.length = body[:-8], body[-8:], len(body)
        self.go = asyncio.Event()

    def finish(self) -> None:
        self.go.set()

    async def chunks(self):
        yield self.first
        await self.go.wait()
        yield self.rest

    def headers(self, declare_length: bool = True) -> dict[str, str]:
        headers = {"Content-Type": f"multipart/form-data; boundary={self.boundary}"}
        return {**headers, "Content-Length": str(self.length)} if declare_length else headers


@dataclass
class Answer:
    status: int
    headers: CIMultiDict
    body: dict


class Sender:
    def __init__(self, svc, session: aiohttp.ClientSession):
        self.svc, self.session = svc, session

    async def new_upload(self, org: str = "org-a") -> str:
        body = {"bytes": 16 * MiB, "filename": "adapter_model.safetensors", "mime_type": "application/octet-stream",
                "purpose": "lora"}
        response = await self.svc.http.post("/v1/uploads", json=body, headers=self.svc.auth(org))
        assert response.status == 200, await response.text()
        return (await response.json())["id"]

    def send(self, path: str, body: HeldBody, org: str = "org-a", declare_length: bool = True) -> asyncio.Task:
        url = str(self.svc.server.make_url(path))
        headers = {**body.headers(declare_length), **self.svc.auth(org)}

        async def post() -> Answer:
            async with self.session.post(url, data=body.chunks(), headers=headers) as response:
                return Answer(response.status, response.headers.copy(), await response.json())
        return asyncio.create_task(post())

    def held_part(self, upload_id: str, size: int, org: str = "org-a") -> tuple[HeldBody, asyncio.Task]:
        body = HeldBody("data", b"p" * size)
        return body, self.send(f"/v1/uploads/{upload_id}/parts", body, org)

    async def part(self, upload_id: str, size: int, org: str = "org-a", declare_length: bool = True) -> Answer:
        body = HeldBody("data", b"p" * size)
        body.finish()
        return await self.send(f"/v1/uploads/{upload_id}/parts", body, org, declare_length)

    async def file(self, size: int, org: str = "org-a") -> Answer:
        body = HeldBody("file", b"{" + b" " * (size - 2) + b"}", purpose="lora")
        body.finish()
        return await self.send("/v1/files", body, org)


async def finished(body: HeldBody, task: asyncio.Task) -> int:
    body.finish()
    return (await task).status


@pytest.fixture
async def session():
    async with aiohttp.ClientSession() as opened:
        yield opened


async def held(svc, org: str, pool: str) -> int:
    """What the org holds of a pool (a weightless probe, released at once)."""
    probe = Pool(pool, f"org:{org}:{pool}", 2**62, 0)
    decision = await svc.platform.leases.acquire([probe], "probe", 1)
    await svc.platform.leases.release([probe.key], "probe")
    return decision.used[0]


async def until_held(svc, org: str, pool: str, amount: int) -> None:
    for _ in range(500):  # a safety net of ~10 s, never an assertion about speed
        if await held(svc, org, pool) == amount:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{org} never held {amount} of {pool}")


def refused(answer: Answer, kind: str, text: str) -> None:
    assert answer.status == 429, answer.body
    assert answer.headers["retry-after"] == "1" and answer.headers["retry-after-ms"] == "1000"
    error = answer.body["error"]
    assert error["type"] == kind and error["code"] == "rate_limit_exceeded"
    assert text in error["message"], error["message"]


async def test_the_upload_past_the_orgs_limit_waits_for_one_to_finish(make_service, session):
    svc = await make_service(ratelimit_concurrent_uploads=2)
    send = Sender(svc, session)
    upload_id = await send.new_upload()
    first, second = send.held_part(upload_id, 4 * KiB), send.held_part(upload_id, 4 * KiB)
    await until_held(svc, "org-a", "uploads", 2)
    refused(await send.part(upload_id, 4 * KiB), "concurrent_uploads",
            "Too many concurrent uploads for your organization: 2 of 2 in progress.")
    refused(await send.file(100), "concurrent_uploads", "2 of 2")
    assert (await send.file(100, org="org-b")).status == 200  # another org is never affected
    assert await finished(*first) == 200
    assert (await send.part(upload_id, 4 * KiB)).status == 200  # the place the finished one left
    assert await finished(*second) == 200


async def test_the_sdk_sees_a_rate_limit_error(make_service, session):
    svc = await make_service(ratelimit_concurrent_uploads=1)
    holding = Sender(svc, session).held_part(await Sender(svc, session).new_upload(), 4 * KiB)
    await until_held(svc, "org-a", "uploads", 1)
    with pytest.raises(openai.RateLimitError, match="concurrent uploads"):
        await svc.sdk().files.create(file=("adapter_config.json", b"{}"), purpose="lora")
    assert await finished(*holding) == 200


async def test_bytes_in_flight_over_the_limit_are_refused(make_service, session):
    svc = await make_service(ratelimit_upload_bytes_in_flight=1 * MiB)
    send = Sender(svc, session)
    upload_id = await send.new_upload()
    body, task = send.held_part(upload_id, 600 * KiB)
    await until_held(svc, "org-a", "upload_bytes", body.length)
    refused(await send.part(upload_id, 600 * KiB), "upload_bytes_in_flight",
            f"Too many upload bytes in flight for your organization: {body.length} of {MiB} bytes")
    assert (await send.part(upload_id, 10 * KiB)).status == 200  # what still fits goes through
    # without a Content-Length a body counts as the most the route takes (here more than the whole limit)
    refused(await send.part(upload_id, 10 * KiB, declare_length=False), "upload_bytes_in_flight",
            f"this request adds {MiB}")
    assert await finished(body, task) == 200
    assert (await send.part(upload_id, 600 * KiB)).status == 200
    assert (await send.part(upload_id, 10 * KiB, declare_length=False)).status == 200  # alone it may take it all


async def test_an_override_raises_one_orgs_limit_only(make_service, session, monkeypatch):
    svc = await make_service(ratelimit_concurrent_uploads=1)
    monkeypatch.setenv("LORASERVE_KEYS_FILE", str(svc.platform.settings.keys_path))
    assert await asyncio.to_thread(main, ["admin", "orgs", "set-limits", "org-a", "--concurrent-uploads", "2"]) == 0
    send = Sender(svc, session)
    uploads = {org: await send.new_upload(org) for org in ("org-a", "org-b")}
    holding = [send.held_part(uploads["org-a"], KiB), send.held_part(uploads["org-a"], KiB),
               send.held_part(uploads["org-b"], KiB, org="org-b")]
    await until_held(svc, "org-a", "uploads", 2)
    await until_held(svc, "org-b", "uploads", 1)
    refused(await send.part(uploads["org-a"], KiB), "concurrent_uploads", "2 of 2")
    refused(await send.part(uploads["org-b"], KiB, org="org-b"), "concurrent_uploads", "1 of 1")
    assert [await finished(*each) for each in holding] == [200, 200, 200]


async def test_a_crashed_replicas_upload_stops_counting_after_its_ttl(make_service, session):
    svc = await make_service(ratelimit_concurrent_uploads=1, lease_ttl_seconds=0.5)
    crashed = Pool("uploads", "org:org-a:uploads", 1)
    assert (await svc.platform.leases.acquire([crashed], "crashed-replica", 0.5)).granted  # never renewed
    send = Sender(svc, session)
    refused(await send.file(100), "concurrent_uploads", "1 of 1")
    await asyncio.sleep(0.6)
    assert (await send.file(100)).status == 200


@pytest.mark.parametrize(("fail_open", "expected"), [(True, 200), (False, 503)])
async def test_a_lease_store_outage_fails_open_or_closed_never_500(make_service, session, fail_open, expected):
    svc = await make_service(ratelimit_fail_open=fail_open)
    svc.platform.leases = RedisLeases("redis://127.0.0.1:1/0", timeout=0.2)
    send = Sender(svc, session)
    upload_id = await send.new_upload()
    for answer in [await send.file(100), await send.part(upload_id, KiB)]:
        assert answer.status == expected, answer.body
        if answer.status == 503:
            assert answer.body["error"]["code"] == "rate_limiter_unavailable" and answer.headers["retry-after"] == "1"
    await svc.platform.leases.close()
