"""Blob-store objects copied to local disk, bounded in bytes, least recently used removed first.

Concurrent requests for one cold object share one download. A leased file is never removed
while it is being read; the cache may then run over its bound until the lease ends.
"""
from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import time
from collections import Counter, OrderedDict
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from shared.stores.blobs import BlobStore


class DiskCache:
    def __init__(self, blobs: BlobStore, root: Path, max_bytes: int,
                 on_fetch: Callable[[bool, float], None] | None = None):
        self.blobs, self.root, self.max_bytes = blobs, Path(root), max_bytes
        self._on_fetch = on_fetch or (lambda hit, seconds: None)
        self._sizes: OrderedDict[str, int] = OrderedDict()  # file name -> bytes, least recently used first
        self._leases: Counter[str] = Counter()
        self._downloads: dict[str, asyncio.Future[None]] = {}
        self._scanned: asyncio.Future[None] | None = None  # one scan, however many leases start at once

    @property
    def bytes_used(self) -> int:
        return sum(self._sizes.values())

    @contextlib.asynccontextmanager
    async def lease(self, object_key: str) -> AsyncIterator[Path]:
        """The object as a local file, kept on disk while the block runs."""
        name = hashlib.sha256(object_key.encode()).hexdigest()
        self._leases[name] += 1
        try:
            await self._ensure(object_key, name)
            yield self.root / name
        finally:
            self._leases[name] -= 1
            if self._leases[name] <= 0:
                del self._leases[name]
            await self._trim()

    async def _ensure(self, object_key: str, name: str) -> None:
        await self._scan_once()
        if name in self._sizes and (self.root / name).exists():
            self._sizes.move_to_end(name)
            self._on_fetch(True, 0.0)
            return
        download = self._downloads.get(name)
        if download is None:
            download = asyncio.ensure_future(self._download(object_key, name))
            self._downloads[name] = download
            download.add_done_callback(lambda _: self._downloads.pop(name, None))
        await asyncio.shield(download)

    async def _download(self, object_key: str, name: str) -> None:
        started = time.perf_counter()
        partial = self.root / f"{name}.partial-{os.getpid()}-{id(self)}"
        try:
            await self.blobs.download_to(object_key, str(partial))
            size = await asyncio.to_thread(lambda: partial.stat().st_size)
            await asyncio.to_thread(os.replace, partial, self.root / name)
        finally:
            await asyncio.to_thread(partial.unlink, True)
        self._sizes[name] = size
        self._on_fetch(False, time.perf_counter() - started)

    async def _scan_once(self) -> None:
        # a second scan would delete the partial file of a download the first one let start
        if self._scanned is None or (self._scanned.done() and self._scanned.exception() is not None):
            self._scanned = asyncio.ensure_future(asyncio.to_thread(self._scan))
        await asyncio.shield(self._scanned)

    def _scan(self) -> None:
        """Adopt what an earlier run of this worker left (oldest first); drop half-written files."""
        self.root.mkdir(parents=True, exist_ok=True)
        files = sorted((p for p in self.root.iterdir() if p.is_file()), key=lambda p: p.stat().st_mtime)
        for path in files:
            if ".partial-" in path.name:
                path.unlink(missing_ok=True)
            else:
                self._sizes[path.name] = path.stat().st_size

    async def _trim(self) -> None:
        victims = []
        used = self.bytes_used
        for name, size in list(self._sizes.items()):
            if used <= self.max_bytes:
                break
            if self._leases[name] == 0 and name not in self._downloads:
                victims.append(name)
                used -= size
                del self._sizes[name]
        for name in victims:
            await asyncio.to_thread((self.root / name).unlink, True)
