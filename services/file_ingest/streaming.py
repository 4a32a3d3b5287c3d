"""Multipart bodies streamed straight into the blob store: never whole in memory, never on local disk.

A form holds small text fields and one file field; the file's bytes go chunk by chunk
into `BlobStore.put_stream`, which hashes them and removes what it wrote if the stream
fails (a client that disconnects, a body over the cap), so nothing is left behind.
"""
from __future__ import annotations

import hashlib
from collections.abc import AsyncIterable, AsyncIterator, Callable
from dataclasses import dataclass, field

from aiohttp import BodyPartReader, web
from aiohttp.client_exceptions import ClientPayloadError
from aiohttp.http_exceptions import HttpProcessingError

from shared.contracts.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType
from shared.stores.blobs import BlobStore, BlobTooLarge, PutResult

CHUNK_BYTES = 1 << 20
MAX_FORM_FIELDS = 16
MAX_TEXT_FIELD_BYTES = 1024
# how aiohttp reports a malformed or truncated form
MALFORMED = (ValueError, AssertionError, HttpProcessingError)
# what a form may add to its file's size: boundaries, part headers and the capped text fields
FORM_OVERHEAD_BYTES = MAX_FORM_FIELDS * (MAX_TEXT_FIELD_BYTES + 1024)

IDENTITY_ENCODINGS = ("binary", "8bit", "7bit")

FieldCheck = Callable[[str, str], None]


def check_declared_length(request: web.BaseRequest, max_file_bytes: int) -> None:
    """Refuse before reading a byte when Content-Length alone shows the file is over the cap."""
    declared = request.content_length
    if declared is not None and declared > max_file_bytes + FORM_OVERHEAD_BYTES:
        raise PayloadTooLarge(f"The request body ({declared} bytes) exceeds the limit of {max_file_bytes} bytes",
                              code="file_too_large")


@dataclass
class StreamedForm:
    fields: dict[str, str] = field(default_factory=dict)
    filename: str | None = None
    stored: PutResult | None = None


class Digest:
    """sha256, md5 and size of bytes as they pass through."""

    def __init__(self) -> None:
        self.sha256 = hashlib.sha256()
        self.md5 = hashlib.md5(usedforsecurity=False)
        self.size = 0

    def update(self, chunk: bytes) -> None:
        self.sha256.update(chunk)
        self.md5.update(chunk)
        self.size += len(chunk)

    async def tee(self, chunks: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
        async for chunk in chunks:
            self.update(chunk)
            yield chunk


async def _part_chunks(part: BodyPartReader) -> AsyncIterator[bytes]:
    try:
        while chunk := await part.read_chunk(CHUNK_BYTES):
            yield chunk
    except (ConnectionError, ClientPayloadError) as exc:
        raise BadRequest("The request body ended before the file was complete", code="incomplete_body") from exc
    except MALFORMED as exc:
        raise BadRequest(f"Malformed multipart body: {exc}", code="invalid_multipart") from exc


async def _read_text(part: BodyPartReader, name: str) -> str:
    data = bytearray()
    async for chunk in _part_chunks(part):
        data += chunk
        if len(data) > MAX_TEXT_FIELD_BYTES:
            raise BadRequest(f"Form field '{name}' is longer than {MAX_TEXT_FIELD_BYTES} bytes", param=name)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest(f"Form field '{name}' is not valid UTF-8", param=name) from None


async def _open_form(request: web.Request):
    if request.content_type != "multipart/form-data":
        raise UnsupportedMediaType(f"Expected a multipart/form-data body, got '{request.content_type or 'none'}'",
                                   code="invalid_content_type")
    try:
        return await request.multipart()
    except MALFORMED as exc:
        raise BadRequest(f"Malformed multipart body: {exc}", code="invalid_multipart") from None


async def _next_part(reader) -> BodyPartReader | None:
    try:
        part = await reader.next()
    except (ConnectionError, ClientPayloadError) as exc:
        raise BadRequest("The request body ended early", code="incomplete_body") from exc
    except MALFORMED as exc:
        raise BadRequest(f"Malformed multipart body: {exc}", code="invalid_multipart") from None
    if part is not None and not isinstance(part, BodyPartReader):
        raise BadRequest("Nested multipart bodies are not supported", code="invalid_multipart")
    return part


async def _store_file(blobs: BlobStore, key: str, part: BodyPartReader, max_bytes: int) -> PutResult:
    encoding = part.headers.get("Content-Transfer-Encoding", "binary").lower()
    if encoding not in IDENTITY_ENCODINGS:
        raise BadRequest(f"Content-Transfer-Encoding '{encoding}' is not supported; send the file's bytes as they are",
                         code="invalid_multipart")
    try:
        return await blobs.put_stream(key, _part_chunks(part), max_bytes=max_bytes)
    except BlobTooLarge:
        raise PayloadTooLarge(f"The file exceeds the limit of {max_bytes} bytes", code="file_too_large") from None


async def stream_form(request: web.Request, *, blobs: BlobStore, file_field: str, key: str, max_bytes: int,
                      check_field: FieldCheck) -> StreamedForm:
    """Read the form, storing `file_field` under `key`; other fields are checked as they arrive.

    Whatever goes wrong after the file was stored (a bad field after it, a second file), the
    object is deleted before the error propagates.
    """
    reader = await _open_form(request)
    form = StreamedForm()
    try:
        for _ in range(MAX_FORM_FIELDS + 1):
            part = await _next_part(reader)
            if part is None:
                return form
            name = part.name or ""
            if name != file_field:
                form.fields[name] = await _read_text(part, name)
                check_field(name, form.fields[name])
            elif form.stored is not None:
                raise BadRequest(f"Send exactly one '{file_field}' field", param=file_field)
            else:
                form.filename = part.filename
                form.stored = await _store_file(blobs, key, part, max_bytes)
        raise BadRequest(f"A form may have at most {MAX_FORM_FIELDS} fields", code="invalid_multipart")
    except BaseException:
        if form.stored is not None:
            await blobs.delete(key)
        raise
