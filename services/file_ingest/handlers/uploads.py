"""/v1/uploads: OpenAI's Uploads API for files too large for one request."""
from __future__ import annotations

from aiohttp import web

from services.file_ingest.completion import complete_upload
from services.file_ingest.context import FileIngest
from services.file_ingest.domain.filenames import InvalidFilename, clean_filename
from services.file_ingest.domain.ids import new_part_id, new_upload_id
from services.file_ingest.domain.uploads import (
    PartRecord,
    UploadNotPending,
    UploadRecord,
    check_accepts_work,
    part_object_key,
)
from services.file_ingest.inflight import receiving
from services.file_ingest.parts import delete_parts
from services.file_ingest.quota import new_upload, upload_ended
from services.file_ingest.streaming import check_declared_length, stream_form
from shared.contracts.errors import BadRequest, Conflict, NotFound
from shared.contracts.files import MAX_PART_IDS, CompleteUploadBody, CreateUploadBody, UploadPartObject
from shared.http.requests import json_response, org_id, read_model
from shared.logging import get_logger

log = get_logger("file_ingest.uploads")


def _ignore_field(name: str, value: str) -> None:
    return None


class UploadHandlers:
    def __init__(self, ctx: FileIngest):
        self.ctx = ctx

    async def _get(self, request: web.Request) -> UploadRecord:
        upload_id = request.match_info["upload_id"]
        upload = await self.ctx.uploads.get(org_id(request), upload_id)
        if upload is None:
            raise NotFound(f"No such Upload object: {upload_id}", param="upload_id", code="upload_not_found")
        return upload

    def _check_open(self, upload: UploadRecord) -> None:
        try:
            check_accepts_work(upload, self.ctx.now())
        except UploadNotPending as exc:
            raise Conflict(str(exc), code="upload_not_pending") from None

    async def create(self, request: web.Request) -> web.Response:
        body = await read_model(request, CreateUploadBody, self.ctx.settings.max_json_body_bytes)
        limit = self.ctx.settings.max_file_bytes
        if body.bytes > limit:
            raise BadRequest(f"bytes ({body.bytes}) exceeds the limit of {limit} bytes", param="bytes",
                             code="file_too_large")
        try:
            filename = clean_filename(body.filename)
        except InvalidFilename as exc:
            raise BadRequest(str(exc), param="filename") from None
        now = self.ctx.now()
        upload = UploadRecord(id=new_upload_id(), org_id=org_id(request), filename=filename, bytes=body.bytes,
                              mime_type=body.mime_type, purpose=body.purpose, created_at=now,
                              expires_at=now + self.ctx.settings.upload_ttl_seconds)
        await self.ctx.usage.take(upload.org_id, new_upload(upload.bytes))  # 403 quota_exceeded when no room
        try:
            await self.ctx.uploads.insert(upload)
        except BaseException:
            await self.ctx.usage.give(upload.org_id, upload_ended(upload.bytes))
            raise
        log.info("upload_created", upload_id=upload.id, bytes=upload.bytes)
        return json_response(upload.public(now))

    async def add_part(self, request: web.Request) -> web.Response:
        max_bytes = self.ctx.settings.max_upload_part_bytes
        check_declared_length(request, max_bytes)
        upload = await self._get(request)
        self._check_open(upload)
        async with receiving(request, max_bytes):
            return await self._receive_part(request, upload, max_bytes)

    async def _receive_part(self, request: web.Request, upload: UploadRecord, max_bytes: int) -> web.Response:
        part_id = new_part_id()
        key = part_object_key(upload.org_id, upload.id, part_id)
        form = await stream_form(request, blobs=self.ctx.blobs, file_field="data", key=key, max_bytes=max_bytes,
                                 check_field=_ignore_field)
        try:
            if form.stored is None or form.stored.size == 0:
                raise BadRequest("'data' is required and must not be empty", param="data")
            now = self.ctx.now()
            part = PartRecord(id=part_id, bytes=form.stored.size, object_key=key, created_at=now)
            if not await self.ctx.uploads.add_part(upload, part, now, MAX_PART_IDS):
                raise await self._part_refused(request, part)
        except BaseException:
            if form.stored is not None:
                await self.ctx.blobs.delete(key)
            raise
        return json_response(UploadPartObject(id=part_id, created_at=part.created_at, upload_id=upload.id))

    async def _part_refused(self, request: web.Request, part: PartRecord) -> Exception:
        """Why the part could not be added, read again now that it was refused."""
        upload = await self._get(request)
        self._check_open(upload)
        if len(upload.parts) >= MAX_PART_IDS:
            return BadRequest(f"An upload holds at most {MAX_PART_IDS} parts", code="too_many_parts")
        return BadRequest(f"This part ({part.bytes} bytes) would bring the parts to more than the upload's "
                          f"{upload.bytes} bytes ({upload.parts_bytes} uploaded so far)", param="data",
                          code="upload_bytes_exceeded")

    async def complete(self, request: web.Request) -> web.Response:
        body = await read_model(request, CompleteUploadBody, self.ctx.settings.max_json_body_bytes)
        upload, record = await complete_upload(self.ctx, org_id(request), request.match_info["upload_id"], body)
        return json_response(upload.public(self.ctx.now(), file=record.public().model_dump()))

    async def cancel(self, request: web.Request) -> web.Response:
        upload = await self._get(request)
        self._check_open(upload)
        cancelled = await self.ctx.uploads.cancel(upload.org_id, upload.id, self.ctx.now())
        if cancelled is None:
            raise Conflict(f"Upload {upload.id} changed while cancelling; try again", code="upload_not_pending")
        await self.ctx.usage.give(cancelled.org_id, upload_ended(cancelled.bytes))
        await delete_parts(self.ctx.blobs, cancelled.parts)
        log.info("upload_cancelled", upload_id=upload.id)
        return json_response(cancelled.public(self.ctx.now()))
