"""The webhooks service on a real port (embedded platform unless an AMQP URL is given), local aiohttp receivers,
the openai SDK as the customer's client, and the public bus events the other services publish."""
from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import openai
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from services.webhooks.app import build
from shared.composition import build_platform
from shared.contracts.messages import LoraDeleted, LoraValidationFinished, ResponseCompleted, ResponseFailed
from shared.http.app import create_app
from shared.platform import Platform
from shared.settings import Settings
from tests.fixtures.net import HOST, free_port

ORGS = ("org-a", "org-b")
WAIT_SECONDS = 20.0  # a safety net for waits, never an assertion about speed
# retries in tests: milliseconds apart, so a receiver's 500s turn into a 200 within the test
FAST_RETRIES = {"webhook_retry_base_seconds": 0.02, "webhook_retry_cap_seconds": 0.1, "webhook_poll_seconds": 0.05}


class Receiver:
    """A customer's webhook receiver: answers each request with the next scripted status (then `default`),
    keeps every request it got; `stop()` takes it off the network (connections are refused)."""

    def __init__(self, statuses: list[int] | None = None, default: int = 200, port: int | None = None):
        self.script, self.default = list(statuses or []), default
        self.port = port or free_port()
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.statuses: list[int] = []  # what each request was answered
        self.arrived = asyncio.Condition()
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}/hook"

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        status = self.script.pop(0) if self.script else self.default
        async with self.arrived:
            self.requests.append(({k.lower(): v for k, v in request.headers.items()}, body))
            self.statuses.append(status)
            self.arrived.notify_all()
        return web.Response(status=status)

    async def start(self) -> Receiver:
        app = web.Application()
        app.router.add_post("/hook", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, HOST, self.port).start()
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def wait_for(self, count: int) -> list[tuple[dict[str, str], bytes]]:
        async with self.arrived:
            await asyncio.wait_for(self.arrived.wait_for(lambda: len(self.requests) >= count), WAIT_SECONDS)
        return list(self.requests)


@dataclass
class Service:
    platform: Platform
    client: TestClient
    keys: dict[str, str]
    sdk_clients: list[openai.AsyncOpenAI] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return str(self.client.server.make_url("")).rstrip("/")

    def sdk(self, org: str = "org-a") -> openai.AsyncOpenAI:
        client = openai.AsyncOpenAI(base_url=f"{self.base_url}/v1", api_key=self.keys[org], max_retries=0)
        self.sdk_clients.append(client)
        return client

    def auth(self, org: str = "org-a") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[org]}"}

    async def deliveries(self, endpoint_id: str, org: str = "org-a", **query) -> dict[str, Any]:
        response = await self.client.get(f"/v1/webhook_endpoints/{endpoint_id}/deliveries", params=query,
                                          headers=self.auth(org))
        assert response.status == 200, await response.text()
        return await response.json()

    async def publish(self, message) -> str:
        """Publish a public event as its service would; the CloudEvents id it went out with."""
        return (await self.platform.bus.publish(message, source="loraserve/test")).id

    async def stop(self) -> None:
        for client in self.sdk_clients:
            await client.close()
        await self.client.close()


async def start_service(data_dir: Path, keys: dict[str, str] | None = None, resolver=None,
                        **settings: Any) -> Service:
    """The webhooks service alone; `keys` from an earlier start on the same data dir keep the orgs' keys."""
    port = free_port()
    config = Settings(data_dir=data_dir, host=HOST, port=port, **{**FAST_RETRIES, **settings})
    platform = build_platform(config, source="loraserve/webhooks-test")
    if resolver is not None:
        platform.extras["webhook_resolver"] = resolver
    if keys is None:
        keys = {org: (await platform.identity.create(org))[1] for org in ORGS}
    client = TestClient(TestServer(create_app(platform, [build(platform)]), host=HOST, port=port))
    await client.start_server()
    return Service(platform, client, keys)


async def wait_until(check, what: str):
    """Poll `check()` (async) until it returns something truthy; fail after WAIT_SECONDS."""
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        found = await check()
        if found:
            return found
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        await asyncio.sleep(0.02)


def verify(secret: str, headers: dict[str, str], body: bytes):
    """What a customer's receiver does: the official SDK's check of the signature, then the parsed event."""
    return openai.OpenAI(api_key="unused").webhooks.unwrap(body, headers, secret=secret)


# -- the public events other services publish --------------------------------------------------------
def lora_object(org: str = "org-a", name: str = "funnier-v1", status: str = "failed") -> dict[str, Any]:
    return {"id": str(uuid.uuid4()), "object": "lora", "name": name, "supported_models": ["loraserve/kimi-k2-tiny"],
            "config_file_id": "file-a", "weights_file_id": "file-b", "status": status, "validations": [],
            "created_at": int(time.time()), "updated_at": int(time.time())}


def validation_finished(org: str = "org-a", status: str = "failed", code: str | None = "rank_too_large",
                        lora: dict[str, Any] | None = None) -> LoraValidationFinished:
    lora = lora or lora_object(org, status="ready" if status == "succeeded" else "failed")
    record = {"id": str(uuid.uuid4()), "model": "loraserve/kimi-k2-tiny", "status": status,
              "response_id": f"resp_{uuid.uuid4().hex}", "result_code": code,
              "result_message": "r=128 exceeds the model's max rank 64" if code else None,
              "created_at": int(time.time()), "finished_at": int(time.time())}
    return LoraValidationFinished(org_id=org, lora=lora, validation=record, version=2)


def lora_deleted(org: str = "org-a") -> LoraDeleted:
    return LoraDeleted(org_id=org, lora=lora_object(org, status="ready"), version=3)


def response_object(status: str = "completed") -> dict[str, Any]:
    error = {"code": "server_error", "message": "the worker failed"} if status == "failed" else None
    return {"id": f"resp_{uuid.uuid4().hex}", "object": "response", "created_at": int(time.time()),
            "status": status, "background": True, "completed_at": int(time.time()), "error": error,
            "model": "loraserve/kimi-k2-tiny", "metadata": {"lora": "funnier-v1"}, "output": [],
            "usage": {"input_tokens": 5, "output_tokens": 7, "total_tokens": 12}}


def response_completed(org: str = "org-a") -> ResponseCompleted:
    return ResponseCompleted(org_id=org, response=response_object("completed"))


def response_failed(org: str = "org-a") -> ResponseFailed:
    return ResponseFailed(org_id=org, response=response_object("failed"))
