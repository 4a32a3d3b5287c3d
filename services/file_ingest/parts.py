"""Removing an upload's part objects once they are no longer needed."""
from __future__ import annotations

from services.file_ingest.domain.uploads import PartRecord
from shared.logging import get_logger
from shared.stores.blobs import BlobStore

log = get_logger("file_ingest.parts")


async def delete_parts(blobs: BlobStore, parts: list[PartRecord]) -> None:
    """Best effort: the upload's state already changed, a leftover part only costs storage."""
    for part in parts:
        try:
            await blobs.delete(part.object_key)
        except Exception:
            log.exception("part_delete_failed", object_key=part.object_key)
