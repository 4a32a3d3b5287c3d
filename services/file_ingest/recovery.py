"""Putting file-ingest back in order after a crash: half-done completions, orphaned blobs, reference counts.

`recover_at_startup` runs on the embedded platform only, before it serves: one process owns
the data dir, so a completion lease still held then belongs to a process that died, and no
write is in flight while the blob directory is compared with the documents.
`rebuild_refs` runs at every start-up: the `lora.created` / `lora.deleted` events that keep
the counts may have been lost with an in-memory bus, and the registry's listing says which
LoRAs exist now.
"""
from __future__ import annotations

import re
from collections.abc import AsyncIterable
from dataclasses import dataclass

from services.file_ingest.completion import finish
from services.file_ingest.context import FileIngest
from services.file_ingest.domain.refs import Reference
from shared.contracts.loras import InternalLoraEntry
from shared.logging import get_logger
from shared.stores.local_blobs import LocalBlobStore

log = get_logger("file_ingest.recovery")
# what file-ingest stores: File objects, upload parts, assembly scratch (see domain/*.py)
FILE_KEY = re.compile(r"^orgs/[^/]+/files/[^/]+$")
UPLOAD_KEY = re.compile(r"^orgs/[^/]+/uploads/[^/]+/(parts|assembly)/.+$")


async def recover_completions(ctx: FileIngest) -> int:
    """Finish every completion whose File was stored; release the others (their parts are intact)."""
    count = 0
    for upload in await ctx.uploads.completing():
        record = await ctx.files.get(upload.org_id, upload.completing_file_id) if upload.completing_file_id else None
        if record is not None:
            await finish(ctx, upload, record)
        else:
            await ctx.uploads.release_completion(upload.org_id, upload.id)
        log.info("completion_recovered", upload_id=upload.id, finished=record is not None)
        count += 1
    return count


async def sweep_orphans(ctx: FileIngest, blobs: LocalBlobStore) -> int:
    """Delete file-ingest's objects that no document holds: files never recorded, parts never added or
    of uploads that ended, assembly scratch. Start-up only: a write in flight would look orphaned."""
    kept = await ctx.files.object_keys() | await ctx.uploads.live_part_keys()
    orphans = [key for key in await blobs.keys("orgs/")
               if (FILE_KEY.match(key) or UPLOAD_KEY.match(key)) and key not in kept]
    for key in orphans:
        await blobs.delete(key)
    if orphans:
        log.info("orphaned_blobs_deleted", count=len(orphans), sample=orphans[:5])
    return len(orphans)


async def recover_at_startup(ctx: FileIngest, blobs: LocalBlobStore) -> None:
    await recover_completions(ctx)
    await sweep_orphans(ctx, blobs)
    # a crash between a state change and its usage update over-counts: nothing is in flight now, so recount
    await ctx.usage.recount(ctx.files.collection, ctx.uploads.collection)


@dataclass(frozen=True)
class RefsRebuilt:
    added: int
    released: int


def _reference(entry: InternalLoraEntry) -> Reference:
    files = (entry.adapter.config_file_id, entry.adapter.weights_file_id)
    return Reference(lora_id=entry.adapter.lora_id, org_id=entry.org_id, file_ids=tuple(dict.fromkeys(files)),
                     released=False)


async def rebuild_refs(ctx: FileIngest, listing: AsyncIterable[InternalLoraEntry]) -> RefsRebuilt:
    """Make the counts match the registry: every listed LoRA holds its files; a LoRA that held files
    before the listing began and is not listed was deleted (its `lora.deleted` was lost) and lets go.
    A LoRA created during the listing is not released: it was not held before it began."""
    before = await ctx.refs.unreleased()
    listed: set[str] = set()
    added = 0
    async for entry in listing:
        reference = _reference(entry)
        listed.add(reference.lora_id)
        held = before.get(reference.lora_id)
        if held is None or set(held.file_ids) != set(reference.file_ids):
            await ctx.refs.apply(reference)
            added += 1
    gone = [reference for lora_id, reference in before.items() if lora_id not in listed]
    for reference in gone:
        await ctx.refs.apply(Reference(lora_id=reference.lora_id, org_id=reference.org_id,
                                       file_ids=reference.file_ids, released=True))
    log.info("file_refs_rebuilt", listed=len(listed), added=added, released=len(gone))
    return RefsRebuilt(added=added, released=len(gone))
