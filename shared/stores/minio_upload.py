"""One streamed put of unknown length to S3, as a multipart upload with bounded memory.

Why not `Minio.put_object(length=-1)`: its unknown-length path builds each part with
repeated `bytes +=` and slices it again, so a 16 MiB part costs three or four copies at
once, and it uploads up to three parts in parallel. Here the part is one bytearray: at
most one part is uploading (in a worker thread) while the next one fills on the event
loop, so memory stays near two parts whatever the object size. The multipart calls are
the client's own (`_create_multipart_upload`, `_upload_part`, `_complete_multipart_upload`,
`_abort_multipart_upload`), pinned with minio==7.2.20.

On any failure (the source raises, the size cap, a network error, cancellation) the
upload is aborted, so no object and no dangling multipart upload is left behind.
"""
from __future__ import annotations

import asyncio
import hashlib
import io
from collections.abc import AsyncIterable, Awaitable, Callable
from typing import Any

from minio import Minio
from minio.datatypes import Part

from shared.logging import get_logger
from shared.stores.blobs import BlobTooLarge, PutResult

log = get_logger(__name__)

CONTENT_TYPE = "application/octet-stream"

RunBlocking = Callable[..., Awaitable[Any]]


class StreamedUpload:
    """Uploads one key; create a new one per put."""

    def __init__(self, client: Minio, bucket: str, key: str, *, part_size: int, run_blocking: RunBlocking):
        self._client = client
        self._bucket = bucket
        self._key = key
        self._part_size = part_size
        self._run_blocking = run_blocking
        self._hasher = hashlib.sha256()
        self._size = 0
        self._upload_id: str | None = None
        self._parts: list[Part] = []
        self._pending: asyncio.Future | None = None  # the one blocking call in flight
        self._stored = False  # set in the worker thread once the object exists

    async def run(self, chunks: AsyncIterable[bytes], max_bytes: int | None) -> PutResult:
        try:
            await self._stream(chunks, max_bytes)
        except BaseException:
            await self._undo()
            raise
        return PutResult(key=self._key, size=self._size, sha256=self._hasher.hexdigest())

    async def _stream(self, chunks: AsyncIterable[bytes], max_bytes: int | None) -> None:
        part = bytearray()
        async for chunk in chunks:
            self._size += len(chunk)
            if max_bytes is not None and self._size > max_bytes:
                raise BlobTooLarge(f"{self._key}: more than {max_bytes} bytes")
            part += chunk
            if len(part) >= self._part_size:
                await self._send_part(part)
                part = bytearray()
        await self._finish(part)

    def _start(self, function, *args) -> asyncio.Future:
        self._pending = asyncio.ensure_future(self._run_blocking(function, *args))
        return self._pending

    async def _wait(self, future: asyncio.Future):
        # shielded: if we are cancelled the thread still runs, and _undo waits for it
        return await asyncio.shield(future)

    async def _collect_pending_part(self) -> None:
        if self._pending is not None:
            self._parts.append(await self._wait(self._pending))
            self._pending = None

    async def _send_part(self, part: bytearray) -> None:
        await self._collect_pending_part()
        if self._upload_id is None:
            headers = {"Content-Type": CONTENT_TYPE}
            self._upload_id = await self._wait(
                self._start(self._client._create_multipart_upload, self._bucket, self._key, headers))
            self._pending = None
        self._start(self._hash_and_upload_part, part, len(self._parts) + 1)

    def _hash_and_upload_part(self, part: bytearray, number: int) -> Part:
        # parts are sent one after another, so the hash sees the bytes in order
        self._hasher.update(part)
        etag = self._client._upload_part(self._bucket, self._key, part, None, self._upload_id, number)
        return Part(number, etag)

    async def _finish(self, last_part: bytearray) -> None:
        if self._upload_id is None:
            await self._wait(self._start(self._hash_and_put_whole, last_part))
            return
        if last_part:
            await self._send_part(last_part)
        await self._collect_pending_part()
        await self._wait(self._start(self._complete))

    def _hash_and_put_whole(self, data: bytearray) -> None:
        self._hasher.update(data)
        self._client.put_object(self._bucket, self._key, io.BytesIO(data), len(data), content_type=CONTENT_TYPE)
        self._stored = True

    def _complete(self) -> None:
        self._client._complete_multipart_upload(self._bucket, self._key, self._upload_id, self._parts)
        self._stored = True

    async def _undo(self) -> None:
        if self._pending is not None:
            await asyncio.wait([self._pending])
            if not self._pending.cancelled():
                self._pending.exception()  # retrieved: the failure that matters is already raising
        try:
            if self._stored:
                # the object was written before the failure reached us (cancelled at the end)
                await self._run_blocking(self._client.remove_object, self._bucket, self._key)
            elif self._upload_id is not None:
                await self._run_blocking(
                    self._client._abort_multipart_upload, self._bucket, self._key, self._upload_id)
        except Exception:
            log.warning("blob_put_cleanup_failed", key=self._key, upload_id=self._upload_id, exc_info=True)
