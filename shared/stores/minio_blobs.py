"""Blob store on MinIO (any S3 server) through the `minio` client: production.

The client is blocking, so every call runs on a dedicated thread pool and a slow
transfer never stalls the event loop nor starves the loop's default executor.
Streamed puts are multipart uploads with bounded memory (`minio_upload`).
"""
from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterable, AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from minio import Minio
from minio.commonconfig import ComposeSource
from minio.error import S3Error
from minio.helpers import MAX_PART_SIZE, MIN_PART_SIZE

from shared.logging import get_logger
from shared.stores.blobs import BlobInfo, BlobNotFound, BlobStore, PutResult
from shared.stores.keys import validate_key
from shared.stores.minio_upload import StreamedUpload

if TYPE_CHECKING:
    from shared.settings import Settings

log = get_logger(__name__)

PART_SIZE = 16 * 1024 * 1024  # 10,000 parts of 16 MiB: objects up to 160 GiB
MAX_PARTS = 10_000
_NOT_FOUND = {"NoSuchKey", "NoSuchObject", "ResourceNotFound", "NoSuchBucket"}
_ALREADY_THERE = {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}


def _check_range(offset: int, length: int | None) -> None:
    if offset < 0 or (length is not None and length < 0):
        raise ValueError("offset and length must not be negative")


def _release(response) -> None:
    response.close()
    response.release_conn()


def server_side_compose_possible(sizes: list[int]) -> bool:
    """S3 assembles parts of at least 5 MiB (the last may be smaller), at most 10,000 of them."""
    if any(size < MIN_PART_SIZE for size in sizes[:-1]):
        return False
    parts = sum(max(1, -(-size // MAX_PART_SIZE)) for size in sizes)
    return parts <= MAX_PARTS


class MinioBlobStore(BlobStore):
    def __init__(self, endpoint: str, access_key: str, secret_key: str, bucket: str, *,
                 secure: bool = False, region: str = "us-east-1", part_size: int = PART_SIZE,
                 max_workers: int = 8):
        if part_size < MIN_PART_SIZE:
            raise ValueError(f"part_size must be at least {MIN_PART_SIZE} bytes (S3's minimum)")
        self._client = Minio(endpoint, access_key=access_key, secret_key=secret_key,
                             secure=secure, region=region)
        self._bucket = bucket
        self._part_size = part_size
        self._executor = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="minio")

    @classmethod
    def from_settings(cls, settings: Settings) -> MinioBlobStore:
        if not settings.s3_endpoint:
            raise ValueError("LORASERVE_S3_ENDPOINT is not set")
        return cls(settings.s3_endpoint, settings.s3_access_key, settings.s3_secret_key, settings.s3_bucket,
                   secure=settings.s3_secure, region=settings.s3_region)

    async def _run(self, function, *args, **kwargs):
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(function, *args, **kwargs))

    def _translate(self, error: S3Error, key: str) -> Exception:
        return BlobNotFound(key) if error.code in _NOT_FOUND else error

    async def start(self) -> None:
        if await self._run(self._client.bucket_exists, self._bucket):
            return
        try:
            await self._run(self._client.make_bucket, self._bucket)
            log.info("blob_bucket_created", bucket=self._bucket)
        except S3Error as error:
            if error.code not in _ALREADY_THERE:  # another replica made it first
                raise

    async def put_stream(self, key: str, chunks: AsyncIterable[bytes], *,
                         max_bytes: int | None = None) -> PutResult:
        upload = StreamedUpload(self._client, self._bucket, validate_key(key),
                                part_size=self._part_size, run_blocking=self._run)
        return await upload.run(chunks, max_bytes)

    async def _open(self, key: str, offset: int, length: int | None):
        """The object's response from `offset`, or None when the range is empty."""
        _check_range(offset, length)
        validate_key(key)
        if length == 0:
            await self.stat(key)
            return None
        try:
            return await self._run(self._client.get_object, self._bucket, key,
                                   offset=offset, length=length or 0)
        except S3Error as error:
            if error.code == "InvalidRange":  # offset at or past the end, as a file read gives b""
                await self.stat(key)
                return None
            raise self._translate(error, key) from None

    async def get_range(self, key: str, offset: int = 0, length: int | None = None) -> bytes:
        response = await self._open(key, offset, length)
        if response is None:
            return b""
        try:
            return await self._run(response.read)
        finally:
            _release(response)

    async def iter_range(self, key: str, offset: int = 0, length: int | None = None,
                         chunk_size: int = 1 << 20) -> AsyncIterator[bytes]:
        response = await self._open(key, offset, length)
        if response is None:
            return
        try:
            while block := await self._run(response.read, chunk_size):
                yield block
        finally:
            _release(response)

    async def stat(self, key: str) -> BlobInfo:
        try:
            found = await self._run(self._client.stat_object, self._bucket, validate_key(key))
        except S3Error as error:
            raise self._translate(error, key) from None
        return BlobInfo(key=key, size=int(found.size or 0))

    async def compose(self, key: str, source_keys: list[str]) -> BlobInfo:
        """Server-side when S3 allows it; else streamed through this process with bounded memory.

        S3 needs every source but the last to be at least 5 MiB. Smaller sources (an
        Uploads API client may send 1 MiB parts) are concatenated by a streamed put
        instead: correct for any sizes, but the bytes travel through this process.
        """
        validate_key(key)
        if not source_keys:
            raise ValueError("compose needs at least one source")
        sizes = [(await self.stat(source)).size for source in source_keys]
        if server_side_compose_possible(sizes):
            sources = [ComposeSource(self._bucket, source) for source in source_keys]
            await self._run(self._client.compose_object, self._bucket, key, sources)
        else:
            log.info("blob_compose_streamed", key=key, sources=len(source_keys), bytes=sum(sizes))
            await self.put_stream(key, self._concatenated(source_keys))
        return await self.stat(key)

    async def _concatenated(self, source_keys: list[str]) -> AsyncIterator[bytes]:
        for source in source_keys:
            async for block in self.iter_range(source):
                yield block

    async def delete(self, key: str) -> None:
        # S3 answers a delete of a missing key with success
        await self._run(self._client.remove_object, self._bucket, validate_key(key))

    async def download_to(self, key: str, path: str) -> None:
        # fget_object writes a temporary file beside `path` and renames it when complete
        try:
            await self._run(self._client.fget_object, self._bucket, validate_key(key), path)
        except S3Error as error:
            raise self._translate(error, key) from None

    async def ready(self) -> bool:
        try:
            return await self._run(self._client.bucket_exists, self._bucket)
        except Exception:
            log.warning("blob_store_not_ready", bucket=self._bucket, exc_info=True)
            return False

    async def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
