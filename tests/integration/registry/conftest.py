"""The registry and file-ingest served together on a real port over the embedded platform
(in-process bus, mongomock documents, local blobs), with a tap on the bus for the tests."""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from aiohttp import FormData
from aiohttp.test_utils import TestClient, TestServer

from services.file_ingest.app import build as build_file_ingest
from services.registry.app import part_for, registry_from
from services.registry.context import Registry
from shared.bus.base import Delivery, Subscription
from shared.composition import build_platform
from shared.contracts import topology as t
from shared.contracts.cloudevents import CloudEvent
from shared.http.app import create_app
from shared.platform import Platform
from shared.settings import Settings
from tests.fixtures.net import free_port

TINY = "loraserve/kimi-k2-tiny"
KIMI = "moonshotai/Kimi-K2.6"
ORGS = ("org-a", "org-b")
SERVICE_TOKEN = "registry-test-token"
WAIT_SECONDS = 10.0  # a safety net for waits on the bus, never an assertion about speed




class Tap:
    """Messages a test collected from the bus, waited for one by one."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[Delivery] = asyncio.Queue()

    async def handle(self, delivery: Delivery) -> None:
        await self.queue.put(delivery)

    async def next(self) -> Delivery:
        return await asyncio.wait_for(self.queue.get(), WAIT_SECONDS)

    async def until(self, predicate) -> CloudEvent:
        while True:
            delivery = await self.next()
            if predicate(delivery.event):
                return delivery.event

    def pending(self) -> list[Delivery]:
        out = []
        while not self.queue.empty():
            out.append(self.queue.get_nowait())
        return out


@dataclass
class Stack:
    platform: Platform
    registry: Registry
    server: TestServer
    http: TestClient
    keys: dict[str, str]
    subscriptions: list[Subscription] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return str(self.server.make_url("")).rstrip("/")

    def auth(self, org: str = "org-a") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[org]}"}

    async def upload(self, org: str = "org-a", name: str = "adapter_config.json", data: bytes = b"{}",
                     purpose: str = "lora") -> str:
        form = FormData()
        form.add_field("purpose", purpose)
        form.add_field("file", data, filename=name, content_type="application/octet-stream")
        resp = await self.http.post("/v1/files", data=form, headers=self.auth(org))
        assert resp.status == 200, await resp.text()
        return (await resp.json())["id"]

    async def adapter_files(self, org: str = "org-a") -> tuple[str, str]:
        config = await self.upload(org, "adapter_config.json", b'{"peft_type": "LORA", "r": 8}')
        weights = await self.upload(org, "adapter_model.safetensors", b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
        return config, weights

    async def create(self, name: str = "funnier-v1", org: str = "org-a", models=(TINY,), files=None, **extra):
        config, weights = files or await self.adapter_files(org)
        body = {"name": name, "supported_models": list(models), "config_file_id": config,
                "weights_file_id": weights, **extra}
        return await self.http.post("/v1/loras", json=body, headers=self.auth(org))

    async def tap_queue(self, queue: str) -> Tap:
        """Consume a durable queue of the topology (e.g. the validator's) in place of its service."""
        tap = Tap()
        self.subscriptions.append(await self.platform.bus.consume(queue, tap.handle))
        return tap

    async def tap_events(self, *binding_keys: str) -> Tap:
        tap = Tap()
        self.subscriptions.append(await self.platform.bus.subscribe(t.EVENTS, list(binding_keys), tap.handle))
        return tap


async def start_stack(data_dir, amqp_url: str | None = None) -> Stack:
    port = free_port()
    settings = Settings(data_dir=data_dir, host="127.0.0.1", port=port, service_token=SERVICE_TOKEN,
                        validation_deadline_seconds=600, amqp_url=amqp_url)
    platform = build_platform(settings, source="loraserve/registry-test")
    keys = {org: (await platform.identity.create(org))[1] for org in ORGS}
    registry = registry_from(platform)
    app = create_app(platform, [build_file_ingest(platform), part_for(registry, platform, heartbeat_seconds=0.2)])
    server = TestServer(app, host="127.0.0.1", port=port)
    http = TestClient(server)
    await http.start_server()
    return Stack(platform, registry, server, http, keys)


async def stop_stack(stack: Stack) -> None:
    for subscription in stack.subscriptions:
        await subscription.close()
    await stack.http.close()


@pytest.fixture
async def stack(tmp_path) -> AsyncIterator[Stack]:
    started = await start_stack(tmp_path)
    yield started
    await stop_stack(started)
