"""The embedded document store: mongomock-motor, made durable on disk by a journal and snapshots.

Writes are caught where they enter: the database and collection objects handed out are
mongomock-motor's own classes (so they still pass `isinstance(..., AsyncIOMotorDatabase)`)
with every writing method wrapped. A write that changed something appends a record to its
collection's journal and returns only once that record is fsynced (concurrent writes share
an fsync), so a write that returned survives a crash, SIGKILL or power cut alike. What a
record holds and why it replays exactly: `journal_ops`. Writes the journal does not record
(index changes, drops, bulk_write, non-deterministic updates) snapshot their collection
before returning instead. A journal is compacted into its collection's snapshot once it
passes `compact_records` records or `compact_bytes` bytes, and on close.
At start-up each collection is its snapshot plus the journal records after the snapshot's
`seq`; a torn last record (a crash mid-append) was never acknowledged and is dropped.
Writes that bypass these methods (an aggregate with `$out`/`$merge`) are not tracked.
One process owns a data dir at a time.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mongomock
from mongomock.store import ServerStore
from mongomock_motor import AsyncMongoMockClient, AsyncMongoMockCollection, AsyncMongoMockDatabase

from shared.logging import get_logger
from shared.stores import document_snapshots as snapshots
from shared.stores import journal
from shared.stores import journal_ops as ops
from shared.stores.private_files import DIR_MODE, make_dir

log = get_logger(__name__)

COMPACT_RECORDS = 20_000
COMPACT_BYTES = 16 * 1024 * 1024


def _journaling(op: str):
    unwrapped = getattr(AsyncMongoMockCollection, op)

    async def method(self: _TrackedCollection, *args, **kwargs):
        args, kwargs = ops.materialized(op, args, kwargs)
        try:
            result = await unwrapped(self, *args, **kwargs)
        except BaseException:
            if op in ops.PARTIAL_ON_ERROR:
                await self._store.written(self._db_name, self._name, op, args, kwargs, None, failed=True)
            raise
        await self._store.written(self._db_name, self._name, op, args, kwargs, result)
        return result

    method.__name__ = op
    return method


def _snapshotting(op: str):
    unwrapped = getattr(AsyncMongoMockCollection, op)

    async def method(self: _TrackedCollection, *args, **kwargs):
        try:
            return await unwrapped(self, *args, **kwargs)
        finally:
            await self._store.compact(self._db_name, self._name)

    method.__name__ = op
    return method


class _TrackedCollection(AsyncMongoMockCollection):
    def __init__(self, database: _TrackedDatabase, collection, store: EmbeddedDocuments):
        super().__init__(database, collection)
        self._store = store
        self._db_name = database.delegate.name
        self._name = collection.name

    async def rename(self, new_name: str, *args, **kwargs):
        try:
            return await AsyncMongoMockCollection.rename(self, new_name, *args, **kwargs)
        finally:  # the new name first: a crash in between leaves both, never neither
            await self._store.compact(self._db_name, new_name)
            await self._store.compact(self._db_name, self._name)


for _op in ops.REPLAYED:
    setattr(_TrackedCollection, _op, _journaling(_op))
for _op in ops.SNAPSHOTTED:
    setattr(_TrackedCollection, _op, _snapshotting(_op))


class _TrackedDatabase(AsyncMongoMockDatabase):
    def __init__(self, client: AsyncMongoMockClient, database, store: EmbeddedDocuments):
        super().__init__(client, database)
        self._store = store

    def get_collection(self, *args, **kwargs) -> _TrackedCollection:
        return _TrackedCollection(self, self.delegate.get_collection(*args, **kwargs), self._store)

    async def create_collection(self, name: str, *args, **kwargs) -> _TrackedCollection:
        try:
            self.delegate.create_collection(name, *args, **kwargs)
        finally:
            await self._store.compact(self.delegate.name, name)
        return self.get_collection(name)

    async def drop_collection(self, name_or_collection, *args, **kwargs):
        name = name_or_collection if isinstance(name_or_collection, str) else name_or_collection.name
        try:
            return self.delegate.drop_collection(name, *args, **kwargs)
        finally:
            await self._store.compact(self.delegate.name, name)


@dataclass
class _Journal:
    seq: int = 0  # the last record written (or in the snapshot)
    records: int = 0  # since the last compaction
    bytes: int = 0


class EmbeddedDocuments:
    def __init__(self, root: Path, *, compact_records: int = COMPACT_RECORDS, compact_bytes: int = COMPACT_BYTES):
        self._root = Path(root)
        make_dir(self._root)
        self._root.chmod(DIR_MODE)  # data dirs made by earlier versions were 0755
        self._compact_records = compact_records
        self._compact_bytes = compact_bytes
        self._server = ServerStore()
        # tz_aware like the production client: datetimes come back in UTC, never naive
        self._mock = mongomock.MongoClient(_store=self._server, tz_aware=True)
        self._client = AsyncMongoMockClient(mock_mongo_client=self._mock)
        self._loaded: set[str] = set()
        self._journals: dict[tuple[str, str], _Journal] = {}
        self._committer = journal.GroupCommitter()
        self._failure: Exception | None = None

    def database(self, name: str) -> _TrackedDatabase:
        if name not in self._loaded:
            self._load(name)
            self._loaded.add(name)
        return _TrackedDatabase(self._client, self._mock.get_database(name), self)

    def _load(self, database: str) -> None:
        names = snapshots.collection_names(self._root, database)
        replayed = 0
        for name in names:
            replayed += self._load_collection(database, name)
        log.debug("documents_loaded", database=database, collections=len(names), replayed=replayed)

    def _load_collection(self, database: str, name: str) -> int:
        text = snapshots.read(snapshots.collection_path(self._root, database, name))
        seq = snapshots.restore(self._server[database][name], text) if text is not None else 0
        path = snapshots.journal_path(self._root, database, name)
        records, good, size = journal.read_records(path)
        if good < size:
            log.warning("journal_torn_tail_dropped", journal=str(path), bytes=size - good)
            journal.cut(path, good)
        state = self._journals[(database, name)] = _Journal(seq=seq)
        collection = self._mock.get_database(database).get_collection(name)
        replayed = 0
        for record in records:
            if record["s"] <= seq:
                continue  # already in the snapshot (a crash between a compaction's two steps)
            ops.replay(collection, record)
            state.seq = record["s"]
            replayed += 1
        state.records, state.bytes = len(records), good
        return replayed

    def _journal(self, database: str, collection: str) -> _Journal:
        return self._journals.setdefault((database, collection), _Journal())

    async def written(self, database: str, collection: str, op: str, args: tuple, kwargs: dict[str, Any],
                      result: Any, *, failed: bool = False) -> None:
        """Make a write that already happened in memory durable before its caller hears of it."""
        arguments = ops.bind(op, args, kwargs)
        if not failed and not ops.changed(op, result, arguments):
            return
        state = self._journal(database, collection)
        try:
            data = journal.encode({"s": state.seq + 1, "op": op, "args": arguments}) \
                if ops.replayable(op, arguments) else None
        except TypeError:
            data = None
        if data is None:
            await self.compact(database, collection)
            return
        state.seq += 1
        state.records += 1
        state.bytes += len(data)
        await self._durable(self._committer.append(snapshots.journal_path(self._root, database, collection), data))
        if state.records >= self._compact_records or state.bytes >= self._compact_bytes:
            await self.compact(database, collection)

    async def compact(self, database: str, collection: str) -> None:
        """Snapshot the collection as it is now and empty its journal (rendered on the loop: no write
        can interleave)."""
        state = self._journal(database, collection)
        text = snapshots.render(collection, self._server[database][collection], state.seq)
        state.records = state.bytes = 0
        await self._durable(self._committer.compact(snapshots.journal_path(self._root, database, collection),
                                                    snapshots.collection_path(self._root, database, collection),
                                                    text))

    async def _durable(self, commit) -> None:
        try:
            await commit
        except journal.JournalWriteFailed as exc:
            self._failure = exc  # memory is now ahead of the disk: stop claiming to be ready
            log.error("documents_not_durable", root=str(self._root), error=str(exc))
            raise

    async def flush(self) -> None:
        """Compact every collection whose journal holds records."""
        for (database, collection), state in list(self._journals.items()):
            if state.records:
                await self.compact(database, collection)

    async def ready(self) -> bool:
        return self._failure is None and self._root.is_dir()

    async def close(self) -> None:
        await self._committer.idle()
        await self.flush()
