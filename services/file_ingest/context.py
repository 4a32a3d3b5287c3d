"""What file-ingest's handlers, consumer and sweeper share: the platform's adapters and the repositories."""
from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from services.file_ingest.quota import UsageLedger
from services.file_ingest.repository import DATABASE, FileRepository, RefRepository, UploadRepository
from shared.bus.base import Bus
from shared.platform import Platform
from shared.quotas import Quotas
from shared.settings import Settings
from shared.stores.blobs import BlobStore


@dataclass
class FileIngest:
    settings: Settings
    blobs: BlobStore
    bus: Bus
    source: str
    files: FileRepository
    uploads: UploadRepository
    refs: RefRepository
    usage: UsageLedger  # per-org counters the quotas are checked against
    clock: Callable[[], float] = field(default=time.time)
    # set once the reference counts were rebuilt from the registry; None: deletes need not wait for it
    refs_rebuilt: asyncio.Event | None = None

    @classmethod
    def from_platform(cls, platform: Platform) -> FileIngest:
        db = platform.documents.database(DATABASE)
        # with the in-memory bus, lora.* events are lost in a crash: the counts are only sure once rebuilt
        rebuilt = None if platform.settings.amqp_url else asyncio.Event()
        return cls(settings=platform.settings, blobs=platform.blobs, bus=platform.bus, source=platform.source,
                   files=FileRepository(db), uploads=UploadRepository(db), refs=RefRepository(db),
                   usage=UsageLedger(db, Quotas(platform.settings, platform.identity)), refs_rebuilt=rebuilt)

    def now(self) -> int:
        return int(self.clock())

    async def ensure_indexes(self) -> None:
        await self.files.ensure_indexes()
        await self.uploads.ensure_indexes()
        await self.refs.ensure_indexes()
        await self.usage.recount_if_new(self.files.collection, self.uploads.collection)
