"""Blob store interface: adapter files, possibly 100 GiB each, never held whole in memory.

Implementations: `shared.stores.minio_blobs.MinioBlobStore` (production, S3 protocol)
and `shared.stores.local_blobs.LocalBlobStore` (embedded default, a directory).
All methods are coroutines; blocking I/O runs off the event loop.
"""
from __future__ import annotations

import abc
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass


class BlobNotFound(Exception):
    pass


class BlobTooLarge(Exception):
    """The stream passed the size cap; nothing was stored."""


@dataclass(frozen=True)
class BlobInfo:
    key: str
    size: int


@dataclass(frozen=True)
class PutResult:
    key: str
    size: int
    sha256: str


class BlobStore(abc.ABC):
    @abc.abstractmethod
    async def put_stream(self, key: str, chunks: AsyncIterable[bytes], *, max_bytes: int | None = None) -> PutResult:
        """Store a stream of unknown length with bounded memory, hashing it on the way.

        If the stream raises, or passes `max_bytes` (`BlobTooLarge`), nothing is left under `key`.
        """

    @abc.abstractmethod
    async def get_range(self, key: str, offset: int = 0, length: int | None = None) -> bytes:
        """Read `length` bytes from `offset` (to the end when None). For headers, not whole weights."""

    @abc.abstractmethod
    def iter_range(self, key: str, offset: int = 0, length: int | None = None,
                   chunk_size: int = 1 << 20) -> AsyncIterator[bytes]:
        """Stream a range of the object in chunks."""

    @abc.abstractmethod
    async def stat(self, key: str) -> BlobInfo: ...

    @abc.abstractmethod
    async def compose(self, key: str, source_keys: list[str]) -> BlobInfo:
        """Assemble `key` from the sources in order, server-side (any sizes)."""

    @abc.abstractmethod
    async def delete(self, key: str) -> None:
        """Delete; deleting a missing key is not an error."""

    @abc.abstractmethod
    async def download_to(self, key: str, path: str) -> None:
        """Write the object to a local file (the worker's disk cache)."""

    @abc.abstractmethod
    async def ready(self) -> bool: ...

    async def start(self) -> None:
        """Prepare the backing storage (create the bucket or directory); idempotent."""

    async def close(self) -> None:
        return None
