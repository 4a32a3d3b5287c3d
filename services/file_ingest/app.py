"""file-ingest's part of an app: the routing table, start-up (indexes, reference counts rebuilt from the
registry), the refs consumer and the sweeper."""
from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterable, Callable

import aiohttp
from aiohttp import web

from services.file_ingest.consumers import lora_refs_consumer
from services.file_ingest.context import FileIngest
from services.file_ingest.events import outbox_ctx
from services.file_ingest.handlers.files import FileHandlers
from services.file_ingest.handlers.internal import InternalHandlers
from services.file_ingest.handlers.uploads import UploadHandlers
from services.file_ingest.recovery import rebuild_refs
from services.file_ingest.streaming import check_declared_length
from services.file_ingest.sweeper import upload_sweeper
from shared.clients.registry import RegistryClient, RegistryUnavailable
from shared.contracts.errors import ApiError
from shared.contracts.loras import InternalLoraEntry
from shared.logging import get_logger
from shared.platform import Platform, ServicePart

NAME = "file-ingest"
log = get_logger("file_ingest.app")
REGISTRY_TIMEOUT = aiohttp.ClientTimeout(total=30, sock_connect=5)
REBUILD_BACKOFF_SECONDS = (0.1, 5.0)  # first retry, longest wait
Listing = Callable[[aiohttp.ClientSession], AsyncIterable[InternalLoraEntry]]


def expect_within(limit: Callable[[], int]):
    """Answer `Expect: 100-continue` with a 413 when Content-Length is already over the cap,
    so the client never sends the body."""

    async def expect_handler(request: web.Request) -> web.StreamResponse | None:
        try:
            check_declared_length(request, limit())
        except ApiError as error:
            return web.json_response(error.openai(), status=error.status, headers={**error.headers,
                                                                                   "Connection": "close"})
        if request.headers.get("Expect", "").lower() != "100-continue":
            raise web.HTTPExpectationFailed(text=f"Unknown Expect: {request.headers.get('Expect')}")
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        request.writer.output_size = 0  # the interim response is not part of the body's accounting
        return None

    return expect_handler


def routes(ctx: FileIngest) -> list[web.AbstractRouteDef]:
    files, uploads, internal = FileHandlers(ctx), UploadHandlers(ctx), InternalHandlers(ctx)
    file_limit = expect_within(lambda: ctx.settings.max_file_bytes)
    part_limit = expect_within(lambda: ctx.settings.max_upload_part_bytes)
    return [
        web.post("/v1/files", files.create, expect_handler=file_limit),
        web.get("/v1/files", files.list, allow_head=False),
        web.get("/v1/files/{file_id}", files.retrieve, allow_head=False),
        web.get("/v1/files/{file_id}/content", files.content, allow_head=False),
        web.delete("/v1/files/{file_id}", files.delete),
        web.post("/v1/uploads", uploads.create),
        web.post("/v1/uploads/{upload_id}/parts", uploads.add_part, expect_handler=part_limit),
        web.post("/v1/uploads/{upload_id}/complete", uploads.complete),
        web.post("/v1/uploads/{upload_id}/cancel", uploads.cancel),
        web.get("/internal/v1/files/{file_id}", internal.lookup, allow_head=False),
    ]


def indexes(ctx: FileIngest):
    async def indexes_ctx(app: web.Application):
        await ctx.ensure_indexes()
        yield

    return indexes_ctx


async def _rebuild_until_done(ctx: FileIngest, listing: Listing, session: aiohttp.ClientSession) -> None:
    wait, longest = REBUILD_BACKOFF_SECONDS
    while True:
        try:
            await rebuild_refs(ctx, listing(session))
            break
        except RegistryUnavailable as exc:  # not up yet (the embedded default lists itself once serving)
            log.info("file_refs_rebuild_waiting", reason=str(exc), retry_in=wait)
        except Exception:
            log.exception("file_refs_rebuild_failed", retry_in=wait)
        await asyncio.sleep(wait)
        wait = min(wait * 2, longest)
    if ctx.refs_rebuilt is not None:
        ctx.refs_rebuilt.set()


def refs_rebuild(ctx: FileIngest, listing: Listing | None):
    """Rebuild the reference counts from the registry in the background, after the consumer is bound."""
    async def rebuild_ctx(app: web.Application):
        if listing is None:  # no registry to ask: the events are all there is
            if ctx.refs_rebuilt is not None:
                ctx.refs_rebuilt.set()
            yield
            return
        async with aiohttp.ClientSession(timeout=REGISTRY_TIMEOUT) as session:
            task = asyncio.create_task(_rebuild_until_done(ctx, listing, session), name="file-ingest-refs-rebuild")
            yield
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    return rebuild_ctx


def registry_listing(platform: Platform) -> Listing:
    def listing(session: aiohttp.ClientSession) -> AsyncIterable[InternalLoraEntry]:
        return RegistryClient(session, platform.internal_url("registry"), platform.settings.service_token).list_all()
    return listing


def part_for(ctx: FileIngest, listing: Listing | None = None) -> ServicePart:
    return ServicePart(name=NAME, routes=routes(ctx),
                       cleanup_ctx=[indexes(ctx), lora_refs_consumer(ctx), refs_rebuild(ctx, listing),
                                    upload_sweeper(ctx), outbox_ctx(ctx)])


def build(platform: Platform) -> ServicePart:
    return part_for(FileIngest.from_platform(platform), registry_listing(platform))
