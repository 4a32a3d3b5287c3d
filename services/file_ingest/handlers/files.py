"""/v1/files: upload (multipart, streamed), list, retrieve, content (ranged), delete."""
from __future__ import annotations

import asyncio
from urllib.parse import quote

from aiohttp import web
from pydantic import Field, ValidationError

from services.file_ingest.context import FileIngest
from services.file_ingest.domain.filenames import InvalidFilename, clean_filename
from services.file_ingest.domain.files import FileRecord, UnknownPurpose, check_purpose, file_object_key
from services.file_ingest.domain.ids import new_file_id
from services.file_ingest.domain.ranges import ByteRange, RangeInvalid, RangeNotSatisfiable, parse_range
from services.file_ingest.events import deletion_events, deletions, file_event, files_outbox
from services.file_ingest.inflight import receiving
from services.file_ingest.quota import file_deleted, new_file
from services.file_ingest.streaming import StreamedForm, check_declared_length, stream_form
from shared.contracts.common import ListEnvelope, ListParams
from shared.contracts.errors import ApiError, BadRequest, Conflict, NotFound, ServiceUnavailable
from shared.contracts.files import FileDeletedObject, FileObject
from shared.contracts.messages import FileCreated
from shared.http.requests import bad_request_from, json_response, org_id
from shared.logging import get_logger

log = get_logger("file_ingest.files")
REFS_WAIT_SECONDS = 10.0


class FileListParams(ListParams):
    purpose: str | None = Field(None, max_length=64)


def _check_file_field(name: str, value: str) -> None:
    if name == "purpose":
        try:
            check_purpose(value)
        except UnknownPurpose as exc:
            raise BadRequest(str(exc), param="purpose", code="invalid_purpose") from None


def _record_from_form(org: str, file_id: str, form: StreamedForm, now: int) -> FileRecord:
    """The File record, or a 400 naming every problem with the form at once."""
    problems, param = [], None
    if "purpose" not in form.fields:
        problems.append("'purpose' is required")
        param = "purpose"
    if form.stored is None:
        problems.append("'file' is required (a multipart file field)")
        param = param or "file"
    elif form.stored.size == 0:
        problems.append("'file' is empty")
        param = param or "file"
    try:
        filename = clean_filename(form.filename)
    except InvalidFilename as exc:
        problems.append(str(exc))
        param = param or "file"
    if problems:
        raise BadRequest("; ".join(problems), param=param)
    return FileRecord(id=file_id, org_id=org, filename=filename, bytes=form.stored.size,
                      purpose=form.fields["purpose"], sha256=form.stored.sha256, created_at=now,
                      object_key=form.stored.key)


def _content_headers(record: FileRecord, span: ByteRange | None) -> dict[str, str]:
    length = record.bytes if span is None else span.length
    headers = {"Content-Type": "application/octet-stream", "Content-Length": str(length),
               "Accept-Ranges": "bytes",
               "Content-Disposition": f"attachment; filename*=UTF-8''{quote(record.filename, safe='')}"}
    if span is not None:
        headers["Content-Range"] = span.content_range(record.bytes)
    return headers


class FileHandlers:
    def __init__(self, ctx: FileIngest):
        self.ctx = ctx

    async def _get(self, request: web.Request) -> FileRecord:
        file_id = request.match_info["file_id"]
        record = await self.ctx.files.get(org_id(request), file_id)
        if record is None:
            raise NotFound(f"No such File object: {file_id}", param="id", code="file_not_found")
        return record

    async def create(self, request: web.Request) -> web.Response:
        max_bytes = self.ctx.settings.max_file_bytes
        check_declared_length(request, max_bytes)
        org, file_id = org_id(request), new_file_id()
        await self.ctx.usage.precheck_file(org)  # before the body: a full org streams nothing
        async with receiving(request, max_bytes):
            return await self._receive(request, org, file_id, max_bytes)

    async def _receive(self, request: web.Request, org: str, file_id: str, max_bytes: int) -> web.Response:
        key = file_object_key(org, file_id)
        form = await stream_form(request, blobs=self.ctx.blobs, file_field="file", key=key, max_bytes=max_bytes,
                                 check_field=_check_file_field)
        try:
            record = _record_from_form(org, file_id, form, self.ctx.now())
            created = file_event(self.ctx, FileCreated, org, record.public())
            await self._insert_within_quota(record, [created])
        except BaseException:
            if form.stored is not None:
                await self.ctx.blobs.delete(key)
            raise
        log.info("file_created", file_id=file_id, bytes=record.bytes, purpose=record.purpose)
        await files_outbox(self.ctx).deliver({"_id": record.id}, [created])
        return json_response(record.public())

    async def _insert_within_quota(self, record: FileRecord, events: list[dict]) -> None:
        await self.ctx.usage.take(record.org_id, new_file(record.bytes))
        try:
            await self.ctx.files.insert(record, events)
        except BaseException:
            await self.ctx.usage.give(record.org_id, file_deleted(record.bytes))
            raise

    async def _refs_known(self) -> None:
        """A file may only be deleted once the counts say for sure whether a LoRA holds it."""
        rebuilt = self.ctx.refs_rebuilt
        if rebuilt is None or rebuilt.is_set():
            return
        try:
            await asyncio.wait_for(rebuilt.wait(), REFS_WAIT_SECONDS)
        except TimeoutError:
            raise ServiceUnavailable("File references are still being rebuilt after a restart; retry shortly.",
                                     code="file_refs_rebuilding", headers={"x-should-retry": "true"}) from None

    async def list(self, request: web.Request) -> web.Response:
        try:
            params = FileListParams.model_validate(dict(request.query))
        except ValidationError as exc:
            raise bad_request_from(exc) from None
        records, has_more = await self.ctx.files.page(org_id(request), limit=params.limit, order=params.order,
                                                      after=params.after, purpose=params.purpose)
        data = [r.public() for r in records]
        envelope = ListEnvelope[FileObject](data=data, first_id=data[0].id if data else None,
                                            last_id=data[-1].id if data else None, has_more=has_more)
        return json_response(envelope)

    async def retrieve(self, request: web.Request) -> web.Response:
        return json_response((await self._get(request)).public())

    async def content(self, request: web.Request) -> web.StreamResponse:
        record = await self._get(request)
        try:
            span = parse_range(request.headers.get("Range"), record.bytes)
        except RangeNotSatisfiable:
            raise ApiError(f"Range not satisfiable for a file of {record.bytes} bytes", status=416,
                           code="range_not_satisfiable",
                           headers={"Content-Range": f"bytes */{record.bytes}"}) from None
        except RangeInvalid as exc:
            raise BadRequest(f"Invalid Range header: {exc}", code="invalid_range") from None
        offset, length = (0, record.bytes) if span is None else (span.start, span.length)
        chunks = self.ctx.blobs.iter_range(record.object_key, offset, length)
        first = await anext(chunks, b"")  # opens the object before the status line is sent
        response = web.StreamResponse(status=200 if span is None else 206, headers=_content_headers(record, span))
        await response.prepare(request)
        try:
            if first:
                await response.write(first)
            async for chunk in chunks:
                await response.write(chunk)
        except ConnectionError:
            log.info("file_content_client_gone", file_id=record.id)
            return response
        finally:
            await chunks.aclose()
        await response.write_eof()
        return response

    async def delete(self, request: web.Request) -> web.Response:
        record = await self._get(request)
        await self._refs_known()
        holders = await self.ctx.refs.holders(record.id)
        if holders:
            raise Conflict(f"File {record.id} is used by LoRA {', '.join(holders)}; delete the LoRA first",
                           param="id", code="file_in_use")
        events = await deletion_events(self.ctx, record)
        deleted = await self.ctx.files.delete(record.org_id, record.id)
        if deleted is None:
            await deletions(self.ctx).drop(events)
            raise NotFound(f"No such File object: {record.id}", param="id", code="file_not_found")
        await self.ctx.usage.give(deleted.org_id, file_deleted(deleted.bytes))
        try:
            await self.ctx.blobs.delete(deleted.object_key)
        except Exception:
            # the File is gone for the caller either way; an orphaned object only costs storage
            log.exception("file_blob_delete_failed", file_id=deleted.id, object_key=deleted.object_key)
        log.info("file_deleted", file_id=deleted.id)
        await deletions(self.ctx).deliver(events)
        return json_response(FileDeletedObject(id=deleted.id))
