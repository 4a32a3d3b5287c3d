"""Asking file-ingest about the two adapter files (its internal lookup, scoped by the caller's org)."""
from __future__ import annotations

import asyncio

from services.registry.context import Registry
from shared.clients.files import FileIngestUnavailable
from shared.contracts.errors import ServiceUnavailable
from shared.contracts.files import InternalFile
from shared.logging import get_logger

log = get_logger("registry.files")


async def lookup_files(registry: Registry, org_id: str,
                       file_ids: list[str]) -> dict[str, InternalFile | None]:
    if registry.files is None:
        raise ServiceUnavailable("The file service is not reachable yet; please retry.",
                                 code="files_unavailable")
    unique = list(dict.fromkeys(file_ids))
    try:
        found = await asyncio.gather(*(registry.files.lookup(org_id, file_id) for file_id in unique))
    except FileIngestUnavailable as exc:
        log.warning("file lookup failed", error=str(exc))
        raise ServiceUnavailable("The file service did not answer; please retry.",
                                 code="files_unavailable") from None
    return dict(zip(unique, found))
