"""file.created / file.deleted, through outboxes (shared/bus/outbox.py), so a crash between a change and
its publish loses no event.

- A File created by POST /v1/files carries its file.created in its own document's outbox (`FileRepository.insert`).
- A File made by completing an Upload is announced by the update that marks the Upload completed (the
  completion's commit point: a File stored by a completion that then fails is deleted, unannounced).
- A deleted File's file.deleted (after any event its outbox still held) is kept in `file_deletions` before
  the delete, which commits it.
Each is published right after its write and pulled once published; `outbox_ctx` publishes what is left
at start-up and every round after, with the same CloudEvents id.
"""
from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from aiohttp import web

from services.file_ingest.context import FileIngest
from services.file_ingest.domain.files import FileRecord
from shared.bus.outbox import DeletionOutbox, DocumentOutbox, keep_flushing, outbox_entry
from shared.contracts.files import FileObject
from shared.contracts.messages import FileCreated, FileDeleted
from shared.logging import correlation_id

SWEEP_INTERVAL_SECONDS = 30.0


def file_event(ctx: FileIngest, kind: type[FileCreated | FileDeleted], org_id: str,
               file: FileObject) -> dict[str, Any]:
    message = kind(org_id=org_id, file=file.model_dump(mode="json"))
    return outbox_entry(message, source=ctx.source, correlation_id=correlation_id.get())


def files_outbox(ctx: FileIngest) -> DocumentOutbox:
    return DocumentOutbox(ctx.files.collection, ctx.bus, ("_id",))


def uploads_outbox(ctx: FileIngest) -> DocumentOutbox:
    return DocumentOutbox(ctx.uploads.collection, ctx.bus, ("_id",))


def deletions(ctx: FileIngest) -> DeletionOutbox:
    return DeletionOutbox(ctx.files.deletions, ctx.files.collection, ctx.bus)


async def deletion_events(ctx: FileIngest, record: FileRecord) -> list[dict[str, Any]]:
    """Keep the File's file.deleted, after whatever its outbox still holds, before it is deleted."""
    ref = {"_id": record.id, "org_id": record.org_id}
    events = [*await files_outbox(ctx).pending(ref), file_event(ctx, FileDeleted, record.org_id, record.public())]
    await deletions(ctx).prepare(events, ref)
    return events


async def flush_file_events(ctx: FileIngest, older_than: float) -> int:
    """Publish the events stored before `older_than` and not yet marked published; returns how many."""
    return (await files_outbox(ctx).flush(older_than) + await uploads_outbox(ctx).flush(older_than)
            + await deletions(ctx).flush(older_than))


def outbox_ctx(ctx: FileIngest):
    async def cleanup_ctx(app: web.Application):
        task = asyncio.create_task(keep_flushing(lambda older_than: flush_file_events(ctx, older_than),
                                                 SWEEP_INTERVAL_SECONDS, "file events"))
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    return cleanup_ctx
