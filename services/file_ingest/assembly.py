"""Assembling an upload's parts into one object, hashing every byte once on the way.

Runs of small parts are copied (streamed, bounded memory) into intermediate objects of
at least 5 MiB so the final compose can run server-side on S3; large parts are composed
as they are and only read for the digest.
"""
from __future__ import annotations

from collections.abc import AsyncIterator

from services.file_ingest.domain.assembly import plan_segments
from services.file_ingest.domain.uploads import PartRecord
from services.file_ingest.streaming import Digest
from shared.logging import get_logger
from shared.stores.blobs import BlobStore

log = get_logger("file_ingest.assembly")


async def _read_parts(blobs: BlobStore, parts: tuple[PartRecord, ...]) -> AsyncIterator[bytes]:
    for part in parts:
        async for chunk in blobs.iter_range(part.object_key):
            yield chunk


async def _drain(chunks: AsyncIterator[bytes]) -> None:
    async for _ in chunks:
        pass


async def assemble(blobs: BlobStore, final_key: str, scratch_prefix: str, parts: list[PartRecord]) -> Digest:
    """Write the parts, in order, as `final_key`; returns the digest of what was written."""
    segments = plan_segments(parts)
    digest = Digest()
    if len(segments) == 1 and segments[0].coalesced:
        await blobs.put_stream(final_key, digest.tee(_read_parts(blobs, segments[0].parts)))
        return digest
    scratch: list[str] = []
    try:
        sources = []
        for index, segment in enumerate(segments):
            if segment.coalesced:
                key = f"{scratch_prefix}/segment-{index:05d}"
                scratch.append(key)
                await blobs.put_stream(key, digest.tee(_read_parts(blobs, segment.parts)))
                sources.append(key)
            else:
                await _drain(digest.tee(_read_parts(blobs, segment.parts)))
                sources.append(segment.parts[0].object_key)
        await blobs.compose(final_key, sources)
    finally:
        for key in scratch:
            await blobs.delete(key)
    log.info("upload_assembled", key=final_key, parts=len(parts), sources=len(segments), coalesced=len(scratch))
    return digest
