"""The embedded document store: mongomock-motor, snapshotted to disk so data survives restarts.

Writes are detected where they enter: the database and collection objects handed out are
mongomock-motor's own classes (so they still pass `isinstance(..., AsyncIOMotorDatabase)`)
with every writing method wrapped to mark its collection dirty. A dirty collection is
snapshotted a short debounce after the write (many writes, one file write) and on close.
Writes that bypass these methods (an aggregate with `$out`/`$merge`) are not tracked.
A crash can lose the last `debounce_s` of writes: fine for the embedded default, which is
why production uses MongoDB. One process owns a data dir at a time.
"""
from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import mongomock
from mongomock.store import ServerStore
from mongomock_motor import AsyncMongoMockClient, AsyncMongoMockCollection, AsyncMongoMockDatabase

from shared.logging import get_logger
from shared.stores import document_snapshots as snapshots

log = get_logger(__name__)

_COLLECTION_WRITES = (
    "insert_one", "insert_many", "update_one", "update_many", "replace_one",
    "delete_one", "delete_many", "find_one_and_update", "find_one_and_replace",
    "find_one_and_delete", "bulk_write", "create_index", "create_indexes",
    "drop_index", "drop_indexes", "drop",
)

MarkDirty = Callable[[str, str], None]  # (database, collection)


def _marking(method_name: str):
    unwrapped = getattr(AsyncMongoMockCollection, method_name)

    async def method(self, *args, **kwargs):
        try:
            return await unwrapped(self, *args, **kwargs)
        finally:  # a failed insert_many may still have inserted some documents
            self._mark_dirty(self._database_name, self._collection_name)

    method.__name__ = method_name
    return method


class _TrackedCollection(AsyncMongoMockCollection):
    def __init__(self, database: _TrackedDatabase, collection, mark_dirty: MarkDirty):
        super().__init__(database, collection)
        self._mark_dirty = mark_dirty
        self._database_name = database.delegate.name
        self._collection_name = collection.name

    async def rename(self, new_name: str, *args, **kwargs):
        try:
            return await AsyncMongoMockCollection.rename(self, new_name, *args, **kwargs)
        finally:
            self._mark_dirty(self._database_name, self._collection_name)
            self._mark_dirty(self._database_name, new_name)


for _name in _COLLECTION_WRITES:
    setattr(_TrackedCollection, _name, _marking(_name))


class _TrackedDatabase(AsyncMongoMockDatabase):
    def __init__(self, client: AsyncMongoMockClient, database, mark_dirty: MarkDirty):
        super().__init__(client, database)
        self._mark_dirty = mark_dirty

    def get_collection(self, *args, **kwargs) -> _TrackedCollection:
        return _TrackedCollection(self, self.delegate.get_collection(*args, **kwargs), self._mark_dirty)

    async def create_collection(self, name: str, *args, **kwargs) -> _TrackedCollection:
        try:
            self.delegate.create_collection(name, *args, **kwargs)
        finally:
            self._mark_dirty(self.delegate.name, name)
        return self.get_collection(name)

    async def drop_collection(self, name_or_collection, *args, **kwargs):
        name = name_or_collection if isinstance(name_or_collection, str) else name_or_collection.name
        try:
            return self.delegate.drop_collection(name, *args, **kwargs)
        finally:
            self._mark_dirty(self.delegate.name, name)


class EmbeddedDocuments:
    def __init__(self, root: Path, *, debounce_s: float = 0.2):
        self._root = Path(root)
        self._root.mkdir(parents=True, exist_ok=True)
        self._debounce_s = debounce_s
        self._server = ServerStore()
        # tz_aware like the production client: datetimes come back in UTC, never naive
        self._mock = mongomock.MongoClient(_store=self._server, tz_aware=True)
        self._client = AsyncMongoMockClient(mock_mongo_client=self._mock)
        self._loaded: set[str] = set()
        self._dirty: set[tuple[str, str]] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._flushes: set[asyncio.Task] = set()
        self._lock = asyncio.Lock()

    def database(self, name: str) -> _TrackedDatabase:
        if name not in self._loaded:
            count = snapshots.load_database(self._root, name, self._server[name])
            self._loaded.add(name)
            log.debug("documents_loaded", database=name, collections=count)
        return _TrackedDatabase(self._client, self._mock.get_database(name), self._mark_dirty)

    def _mark_dirty(self, database: str, collection: str) -> None:
        self._dirty.add((database, collection))
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._debounce_s, self._flush_soon)

    def _flush_soon(self) -> None:
        self._timer = None
        task = asyncio.get_running_loop().create_task(self._flush_logged())
        self._flushes.add(task)
        task.add_done_callback(self._flushes.discard)

    async def _flush_logged(self) -> None:
        try:
            await self.flush()
        except Exception:
            log.exception("documents_flush_failed", root=str(self._root))

    async def flush(self) -> None:
        """Write every dirty collection's snapshot now."""
        async with self._lock:
            dirty, self._dirty = self._dirty, set()
            if not dirty:
                return
            try:
                # rendered on the loop, so no write can interleave with the snapshot
                rendered = [(snapshots.collection_path(self._root, database, collection),
                             snapshots.render(collection, self._server[database][collection]))
                            for database, collection in sorted(dirty)]
                await asyncio.to_thread(snapshots.write_all, rendered)
            except BaseException:
                self._dirty |= dirty  # try again on the next flush
                raise

    async def ready(self) -> bool:
        return self._root.is_dir()

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._flushes:
            await asyncio.gather(*self._flushes, return_exceptions=True)
        await self.flush()
