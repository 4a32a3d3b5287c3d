"""Expires pending uploads past their `expires_at` and deletes their parts."""
from __future__ import annotations

import asyncio
import contextlib

from aiohttp import web

from services.file_ingest.context import FileIngest
from services.file_ingest.parts import delete_parts
from services.file_ingest.quota import upload_ended
from shared.logging import get_logger

log = get_logger("file_ingest.sweeper")
MAX_SWEEP_INTERVAL_SECONDS = 60.0


async def sweep_expired(ctx: FileIngest) -> int:
    """Expire every due upload; returns how many were expired."""
    count = 0
    while (upload := await ctx.uploads.expire_next(ctx.now())) is not None:
        await ctx.usage.give(upload.org_id, upload_ended(upload.bytes))
        await delete_parts(ctx.blobs, upload.parts)
        log.info("upload_expired", upload_id=upload.id, parts=len(upload.parts))
        count += 1
    return count


async def _run(ctx: FileIngest, interval: float) -> None:
    while True:
        try:
            await sweep_expired(ctx)
        except Exception:
            log.exception("upload_sweep_failed")
        await asyncio.sleep(interval)


def upload_sweeper(ctx: FileIngest):
    interval = min(MAX_SWEEP_INTERVAL_SECONDS, max(1.0, ctx.settings.upload_ttl_seconds / 4))

    async def sweeper_ctx(app: web.Application):
        task = asyncio.create_task(_run(ctx, interval), name="file-ingest-upload-sweeper")
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    return sweeper_ctx
