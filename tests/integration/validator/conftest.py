"""The validator service on the in-process bus and the on-disk blob store, as `loraserve dev` runs it."""
from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from aiohttp import web

from services.validator.app import build
from shared.bus.inprocess import InProcessBus
from shared.catalogue.catalogue import load_catalogue
from shared.contracts import topology as t
from shared.contracts.messages import AdapterRef, ValidateAdapter
from shared.platform import Platform
from shared.settings import Settings
from shared.stores.blobs import BlobInfo, BlobStore
from shared.stores.local_blobs import LocalBlobStore
from tests.fixtures.inbox import Inbox as _Inbox

WAIT = 20.0  # seconds before a test gives up on a message that should come (a hang guard, not a timing)
TINY_SLUG = "kimi-k2-tiny"




class CountingBlobs(BlobStore):
    """Wraps a store: counts the bytes read, and can fail the first reads like a lost connection."""

    def __init__(self, inner: BlobStore, failures: int = 0):
        self.inner, self.failures, self.bytes_read = inner, failures, 0

    async def get_range(self, key: str, offset: int = 0, length: int | None = None) -> bytes:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("blob store went away")
        data = await self.inner.get_range(key, offset, length)
        self.bytes_read += len(data)
        return data

    async def stat(self, key: str) -> BlobInfo:
        return await self.inner.stat(key)

    async def put_stream(self, key, chunks, *, max_bytes=None):
        return await self.inner.put_stream(key, chunks, max_bytes=max_bytes)

    def iter_range(self, key, offset=0, length=None, chunk_size=1 << 20):
        raise AssertionError("the validator never streams a blob")

    async def compose(self, key, source_keys):
        raise NotImplementedError

    async def delete(self, key):
        await self.inner.delete(key)

    async def download_to(self, key, path):
        raise AssertionError("the validator never downloads a blob")

    async def ready(self) -> bool:
        return await self.inner.ready()


@dataclass
class Service:
    bus: InProcessBus
    blobs: CountingBlobs
    root: object
    statuses: Inbox
    gpu_jobs: Inbox

    async def put(self, key: str, data: bytes) -> None:
        async def one_chunk() -> AsyncIterator[bytes]:
            yield data
        await self.blobs.put_stream(key, one_chunk())

    async def submit(self, job: ValidateAdapter) -> None:
        await self.bus.publish(job, source="test", correlation_id=f"req-{job.validation_id}")


def job(validation_id: str = "val-1", model: str = "loraserve/kimi-k2-tiny", slug: str = TINY_SLUG,
        config_key: str = "orgs/acme/files/file-cfg", weights_key: str = "orgs/acme/files/file-w") -> ValidateAdapter:
    adapter = AdapterRef(lora_id="lora-1", name="funnier-v1", config_file_id="file-cfg", weights_file_id="file-w",
                         config_object_key=config_key, weights_object_key=weights_key)
    return ValidateAdapter(validation_id=validation_id, org_id="acme", model=model, model_slug=slug,
                           response_id="resp_1", adapter=adapter)


async def start_service(tmp_path, failures: int = 0, settings: Settings | None = None
                        ) -> tuple[Service, web.Application, AsyncIterator]:
    catalogue = load_catalogue()
    bus = InProcessBus(t.topology(catalogue.slugs()), drain_timeout=5.0, publish_timeout=5.0)
    await bus.start()
    store = LocalBlobStore(tmp_path / "blobs")
    await store.start()
    blobs = CountingBlobs(store, failures)
    platform = Platform(settings=settings or Settings(), bus=bus, documents=None, blobs=blobs, identity=None,
                        catalogue=catalogue, source="loraserve-test")
    statuses, gpu_jobs = Inbox(), Inbox()
    await bus.subscribe(t.EVENTS, ["org.*.validation.status.changed"], statuses)
    await bus.consume(t.gpu_validation_queue(TINY_SLUG), gpu_jobs)
    await bus.consume(t.gpu_validation_queue("kimi-k2-6"), gpu_jobs)
    app = web.Application()
    part = build(platform)
    contexts = [ctx(app) for ctx in part.cleanup_ctx]
    for context in contexts:
        await context.__anext__()
    return Service(bus, blobs, tmp_path / "blobs", statuses, gpu_jobs), app, contexts


@pytest.fixture
async def make_service(tmp_path):
    """Starts the validator; `failures` first blob reads fail like a lost connection."""
    started: list = []

    async def make(failures: int = 0, settings: Settings | None = None) -> Service:
        service, _, contexts = await start_service(tmp_path, failures, settings)
        started.append((service, contexts))
        return service

    yield make
    for service, contexts in started:
        for context in reversed(contexts):
            with pytest.raises(StopAsyncIteration):
                await context.__anext__()
        await service.bus.close()


@pytest.fixture
async def service(make_service) -> Service:
    return await make_service()


class Inbox(_Inbox):
    def __init__(self) -> None:
        super().__init__(wait=WAIT)
