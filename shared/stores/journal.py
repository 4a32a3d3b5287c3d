"""Append-only journals of document-store writes: one file per collection, fsynced, group-committed.

A journal line is `<crc32 as 8 hex digits> <record>\\n`, the record one canonical Extended
JSON object (it never holds a newline). A crash mid-append leaves a torn last line: no
newline, or a checksum that does not match. `read_records` stops at the first such line
and says where the intact part ends; the caller cuts the file there before appending
again. Nothing after a bad line is trusted: its place in the order would be unknown.

`GroupCommitter` makes writes durable in batches: each caller queues the bytes of its
records (or a compaction: a snapshot that replaces the journal's records so far) and
waits; one thread writes and fsyncs everything queued since the previous batch, so
concurrent writers share one fsync per journal. Batches run one at a time, in order, so
every journal holds its records in the order the writes happened, and a caller hears
"durable" only once its batch is on disk.
"""
from __future__ import annotations

import asyncio
import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bson import json_util

from shared.stores import document_snapshots as snapshots
from shared.stores.private_files import FILE_MODE, fsync_dir, make_dir


class JournalWriteFailed(Exception):
    """A batch could not be made durable (disk full, I/O error): its writes were not acknowledged."""


def encode(record: dict[str, Any]) -> bytes:
    """One journal line; raises TypeError for a value Extended JSON cannot hold."""
    body = json_util.dumps(record, json_options=snapshots.JSON_OPTIONS).encode("utf-8")
    return b"%08x %s\n" % (zlib.crc32(body), body)


def _decode(line: bytes) -> dict[str, Any] | None:
    if len(line) < 10 or line[8:9] != b" ":
        return None
    body = line[9:]
    try:
        if int(line[:8], 16) != zlib.crc32(body):
            return None
        return json_util.loads(body, json_options=snapshots.JSON_OPTIONS)
    except ValueError:
        return None


def read_records(path: Path) -> tuple[list[dict[str, Any]], int, int]:
    """The journal's intact records in order, the bytes they span, and the file's size."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return [], 0, 0
    records: list[dict[str, Any]] = []
    good = 0
    while good < len(data):
        end = data.find(b"\n", good)
        record = _decode(data[good:end]) if end >= 0 else None
        if record is None:
            break
        records.append(record)
        good = end + 1
    return records, good, len(data)


def cut(path: Path, length: int) -> None:
    """Drop a torn tail so that the next append starts on a line of its own."""
    descriptor = os.open(path, os.O_WRONLY)
    try:
        os.ftruncate(descriptor, length)
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


@dataclass(frozen=True)
class _Append:
    journal: Path
    data: bytes


@dataclass(frozen=True)
class _Compaction:
    journal: Path
    snapshot: Path
    text: str


_Item = _Append | _Compaction


class GroupCommitter:
    def __init__(self) -> None:
        self._queue: list[tuple[_Item, asyncio.Future]] = []
        self._worker: asyncio.Task | None = None
        self._existing: set[Path] = set()  # journals whose directory entry is already durable

    async def append(self, journal: Path, data: bytes) -> None:
        await self._submit(_Append(journal, data))

    async def compact(self, journal: Path, snapshot: Path, text: str) -> None:
        """Write `snapshot` and empty the journal of every record queued before this call."""
        await self._submit(_Compaction(journal, snapshot, text))

    async def idle(self) -> None:
        while self._worker is not None:
            await asyncio.shield(self._worker)

    async def _submit(self, item: _Item) -> None:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._queue.append((item, future))
        if self._worker is None:
            self._worker = loop.create_task(self._drain())
        # a cancelled caller does not cancel the batch: its write happened in memory either way
        await asyncio.shield(future)

    async def _drain(self) -> None:
        try:
            while self._queue:
                batch, self._queue = self._queue, []
                try:
                    await asyncio.to_thread(self._write, [item for item, _ in batch])
                except BaseException as exc:
                    failure = JournalWriteFailed(f"journal write failed: {exc!r}")
                    for _, future in batch:
                        _settle(future, failure)
                    if not isinstance(exc, Exception):
                        raise
                else:
                    for _, future in batch:
                        _settle(future, None)
        finally:
            self._worker = None

    def _write(self, items: list[_Item]) -> None:
        by_journal: dict[Path, list[_Item]] = {}
        for item in items:
            by_journal.setdefault(item.journal, []).append(item)
        for journal, group in by_journal.items():
            compactions = [i for i, item in enumerate(group) if isinstance(item, _Compaction)]
            if not compactions:
                self._append(journal, b"".join(item.data for item in group), truncate=False)
                continue
            last = compactions[-1]
            # the snapshot first: until the journal is emptied its old records are skipped by `seq`
            snapshots.write(group[last].snapshot, group[last].text)
            self._append(journal, b"".join(item.data for item in group[last + 1:]), truncate=True)

    def _append(self, journal: Path, data: bytes, *, truncate: bool) -> None:
        new = journal not in self._existing and not journal.exists()
        if new and not data:
            return
        if new:
            make_dir(journal.parent)
        flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if truncate else os.O_APPEND)
        descriptor = os.open(journal, flags, FILE_MODE)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(descriptor, view):]
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        if new:
            fsync_dir(journal.parent)
        self._existing.add(journal)


def _settle(future: asyncio.Future, failure: Exception | None) -> None:
    if future.done():
        return
    if failure is None:
        future.set_result(None)
    else:
        future.set_exception(failure)
        future.exception()  # retrieved here: a caller that was cancelled meanwhile never reads it
