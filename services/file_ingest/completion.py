"""Completing an upload: check the part list, assemble, verify bytes and md5, then record the File.

Order matters for a crash at any point: the lease names the File id first, the File is
stored, the upload is marked completed, and only then are its parts deleted. A retry of
`complete` answers the completed upload again, or finishes a completion whose File was
stored before it stopped; the embedded platform also does that at start-up (`recovery`).
"""
from __future__ import annotations

from services.file_ingest.assembly import assemble
from services.file_ingest.context import FileIngest
from services.file_ingest.domain.files import FileRecord, file_object_key
from services.file_ingest.domain.ids import new_file_id
from services.file_ingest.domain.uploads import (
    CompletionRefused,
    UploadNotPending,
    UploadRecord,
    check_accepts_work,
    select_parts,
    upload_prefix,
)
from services.file_ingest.events import file_event, uploads_outbox
from services.file_ingest.parts import delete_parts
from services.file_ingest.quota import upload_completed
from services.file_ingest.streaming import Digest
from shared.contracts.errors import BadRequest, Conflict, InternalError, NotFound
from shared.contracts.files import CompleteUploadBody
from shared.contracts.messages import FileCreated
from shared.logging import get_logger
from shared.stores.blobs import BlobNotFound

log = get_logger("file_ingest.completion")
# how long a completion holds the upload; past it a crashed completion no longer blocks the sweeper
COMPLETION_LEASE_SECONDS = 6 * 3600


def refused(exc: CompletionRefused) -> BadRequest:
    return BadRequest(f"Cannot complete the upload: {exc}", param=exc.param, code="invalid_parts")


async def _claim(ctx: FileIngest, upload: UploadRecord, body: CompleteUploadBody) -> UploadRecord:
    now = ctx.now()
    try:
        check_accepts_work(upload, now)
        select_parts(upload, body.part_ids)  # refuse a wrong list before taking the lease
    except UploadNotPending as exc:
        raise Conflict(str(exc), code="upload_not_pending") from None
    except CompletionRefused as exc:
        raise refused(exc) from None
    claimed = await ctx.uploads.claim_completion(upload.org_id, upload.id, now, now + COMPLETION_LEASE_SECONDS,
                                                 new_file_id())
    if claimed is None:
        raise Conflict(f"Upload {upload.id} changed while completing; try again", code="upload_not_pending")
    return claimed


def _verify(upload: UploadRecord, digest: Digest, md5: str | None) -> None:
    if digest.size != upload.bytes:
        # the parts' sizes were checked against `bytes`; a different total means a store fault
        raise InternalError(f"assembled {digest.size} bytes, expected {upload.bytes}")
    if md5 is not None and digest.md5.hexdigest() != md5.lower():
        raise BadRequest(f"md5 mismatch: the uploaded bytes have md5 {digest.md5.hexdigest()}, not {md5}",
                         param="md5", code="md5_mismatch")


async def _build_file(ctx: FileIngest, upload: UploadRecord, body: CompleteUploadBody) -> FileRecord:
    parts = select_parts(upload, body.part_ids)
    file_id = upload.completing_file_id or new_file_id()
    key = file_object_key(upload.org_id, file_id)
    try:
        digest = await assemble(ctx.blobs, key, f"{upload_prefix(upload.org_id, upload.id)}/assembly", parts)
    except BlobNotFound:
        raise Conflict(f"Upload {upload.id} has lost some of its parts; create a new upload",
                       code="upload_parts_missing") from None
    try:
        _verify(upload, digest, body.md5)
        record = FileRecord(id=file_id, org_id=upload.org_id, filename=upload.filename, bytes=digest.size,
                            purpose=upload.purpose, sha256=digest.sha256.hexdigest(), created_at=ctx.now(),
                            object_key=key)
        await ctx.files.insert(record)
    except BaseException:
        await ctx.blobs.delete(key)
        raise
    return record


async def finish(ctx: FileIngest, upload: UploadRecord, record: FileRecord) -> UploadRecord:
    """Mark the upload completed with its stored File, then delete its parts (only now: both are durable)."""
    created = file_event(ctx, FileCreated, upload.org_id, record.public())
    completed = await ctx.uploads.mark_completed(upload.org_id, upload.id, record.id, [created])
    if completed is None:
        current = await ctx.uploads.get(upload.org_id, upload.id)
        if current is None or current.status != "completed" or current.file_id != record.id:
            await ctx.files.delete(upload.org_id, record.id)
            await ctx.blobs.delete(record.object_key)
            raise Conflict(f"Upload {upload.id} was cancelled or expired while completing",
                           code="upload_not_pending")
        completed = current  # a concurrent retry finished this very completion (and converted the reservation)
    else:
        await ctx.usage.give(upload.org_id, upload_completed(upload.bytes, record.bytes))
    await delete_parts(ctx.blobs, completed.parts)
    log.info("upload_completed", upload_id=upload.id, file_id=record.id, bytes=record.bytes)
    await uploads_outbox(ctx).flush_document({"_id": upload.id})  # its file.created (or a retry's, if left)
    return completed


async def _resume(ctx: FileIngest, upload: UploadRecord) -> tuple[UploadRecord, FileRecord] | None:
    """A retry of a completion that went through (the same answer again) or that stored its File and then
    stopped (finished now); None when there is nothing to resume."""
    if upload.status == "completed" and upload.file_id:
        record = await ctx.files.get(upload.org_id, upload.file_id)
        return (upload, record) if record is not None else None
    if upload.status == "pending" and upload.completing_file_id:
        record = await ctx.files.get(upload.org_id, upload.completing_file_id)
        if record is not None:
            return await finish(ctx, upload, record), record
    return None


async def complete_upload(ctx: FileIngest, org: str, upload_id: str,
                          body: CompleteUploadBody) -> tuple[UploadRecord, FileRecord]:
    upload = await ctx.uploads.get(org, upload_id)
    if upload is None:
        raise NotFound(f"No such Upload object: {upload_id}", param="upload_id", code="upload_not_found")
    if (resumed := await _resume(ctx, upload)) is not None:
        return resumed
    upload = await _claim(ctx, upload, body)
    try:
        record = await _build_file(ctx, upload, body)
    except CompletionRefused as exc:
        await ctx.uploads.release_completion(org, upload_id)
        raise refused(exc) from None
    except BaseException:
        # a wrong md5 leaves the upload pending with its parts, so the client may complete again
        await ctx.uploads.release_completion(org, upload_id)
        raise
    return await finish(ctx, upload, record), record
