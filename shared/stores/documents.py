"""The document store every service uses: `database(name)` gives a motor database.

With `LORASERVE_MONGO_URL` set it is MongoDB through motor; without it, the embedded
default (`embedded_documents`): mongomock-motor persisted under `<data_dir>/documents/`
(every write journaled and fsynced before it returns).
Code written against it must work on both, so it uses neither sessions, transactions
nor change streams (mongomock has none): one document per aggregate, conditional
updates (`find_one_and_update` with a state filter) for compare-and-set.
Both backends return timezone-aware (UTC) datetimes.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from motor.motor_asyncio import AsyncIOMotorClient, AsyncIOMotorDatabase

from shared.logging import get_logger
from shared.stores.embedded_documents import EmbeddedDocuments

if TYPE_CHECKING:
    from shared.settings import Settings

log = get_logger(__name__)

SERVER_SELECTION_TIMEOUT_MS = 5000


class _MongoDocuments:
    def __init__(self, url: str):
        # motor connects lazily, on the first operation
        self._client = AsyncIOMotorClient(url, tz_aware=True,
                                          serverSelectionTimeoutMS=SERVER_SELECTION_TIMEOUT_MS)

    def database(self, name: str) -> AsyncIOMotorDatabase:
        return self._client.get_database(name)

    async def flush(self) -> None:
        return None

    async def ready(self) -> bool:
        try:
            await self._client.admin.command("ping")
            return True
        except Exception:
            log.warning("documents_not_ready", exc_info=True)
            return False

    async def close(self) -> None:
        self._client.close()


class DocumentStore:
    def __init__(self, *, mongo_url: str | None = None, data_dir: Path | str | None = None, **embedded):
        if mongo_url:
            self._backend = _MongoDocuments(mongo_url)
        elif data_dir is not None:
            # `embedded`: the journal's compaction thresholds (compact_records, compact_bytes)
            self._backend = EmbeddedDocuments(Path(data_dir) / "documents", **embedded)
        else:
            raise ValueError("a DocumentStore needs a mongo_url or a data_dir")
        self.embedded = not mongo_url

    @classmethod
    def from_settings(cls, settings: Settings) -> DocumentStore:
        return cls(mongo_url=settings.mongo_url, data_dir=settings.data_dir)

    def database(self, name: str) -> AsyncIOMotorDatabase:
        return self._backend.database(name)

    async def flush(self) -> None:
        """Compact the embedded store's journals into its snapshots now (MongoDB: nothing to do)."""
        await self._backend.flush()

    async def ready(self) -> bool:
        return await self._backend.ready()

    async def close(self) -> None:
        """Final flush of the embedded store; closes the MongoDB client."""
        await self._backend.close()
