"""file-ingest served on a real port (aiohttp TestServer) over the embedded platform, and SDK clients for it."""
from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from openai import AsyncOpenAI

from services.file_ingest.app import part_for
from services.file_ingest.context import FileIngest
from shared.composition import build_platform
from shared.http.app import create_app
from shared.platform import Platform
from shared.settings import Settings

MiB = 1024 * 1024
SERVICE_TOKEN = "test-service-token"
ORGS = ("org-a", "org-b")


class Clock:
    """Wall-clock time plus whatever a test skips ahead."""

    def __init__(self) -> None:
        self.skipped = 0.0

    def __call__(self) -> float:
        return time.time() + self.skipped


@dataclass
class Service:
    platform: Platform
    ctx: FileIngest
    server: TestServer
    http: TestClient
    keys: dict[str, str]
    clock: Clock
    _sdks: list[AsyncOpenAI] = field(default_factory=list)

    def sdk(self, org: str = "org-a") -> AsyncOpenAI:
        client = AsyncOpenAI(base_url=str(self.server.make_url("/v1")), api_key=self.keys[org], max_retries=0)
        self._sdks.append(client)
        return client

    def auth(self, org: str = "org-a") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[org]}"}

    def stored_objects(self) -> list[str]:
        """Every object key in the local blob store (committed or still being written)."""
        root = self.platform.settings.data_dir / "blobs"
        return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


ServiceFactory = Callable[..., Awaitable[Service]]


@pytest.fixture
async def make_service(tmp_path: Path) -> AsyncIterator[ServiceFactory]:
    started: list[Service] = []

    async def start(**overrides) -> Service:
        values = {"service_token": SERVICE_TOKEN, "max_file_bytes": 32 * MiB,
                  "max_upload_part_bytes": 8 * MiB, **overrides}
        settings = Settings(data_dir=tmp_path / f"svc{len(started)}", **values)
        platform = build_platform(settings, source="loraserve/file-ingest-test")
        keys = {org: (await platform.identity.create(org))[1] for org in ORGS}
        clock = Clock()
        ctx = FileIngest.from_platform(platform)
        ctx.clock = clock
        server = TestServer(create_app(platform, [part_for(ctx)]))
        http = TestClient(server)
        await http.start_server()
        service = Service(platform, ctx, server, http, keys, clock)
        started.append(service)
        return service

    yield start
    for service in started:
        for sdk in service._sdks:
            await sdk.close()
        await service.http.close()


@pytest.fixture
async def svc(make_service: ServiceFactory) -> Service:
    return await make_service()
