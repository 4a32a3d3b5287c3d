"""file-ingest's part of an app: the routing table, start-up (indexes), the refs consumer and the sweeper."""
from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from services.file_ingest.consumers import lora_refs_consumer
from services.file_ingest.context import FileIngest
from services.file_ingest.handlers.files import FileHandlers
from services.file_ingest.handlers.internal import InternalHandlers
from services.file_ingest.handlers.uploads import UploadHandlers
from services.file_ingest.streaming import check_declared_length
from services.file_ingest.sweeper import upload_sweeper
from shared.contracts.errors import ApiError
from shared.platform import Platform, ServicePart

NAME = "file-ingest"


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


def part_for(ctx: FileIngest) -> ServicePart:
    return ServicePart(name=NAME, routes=routes(ctx),
                       cleanup_ctx=[indexes(ctx), lora_refs_consumer(ctx), upload_sweeper(ctx)])


def build(platform: Platform) -> ServicePart:
    return part_for(FileIngest.from_platform(platform))
