"""How an upload's parts become one object: S3 composes only sources of at least 5 MiB
(except the last), so runs of smaller parts are first copied into one intermediate object each.
"""
from __future__ import annotations

from dataclasses import dataclass

from services.file_ingest.domain.uploads import PartRecord

MIN_COMPOSE_SOURCE_BYTES = 5 * 1024 * 1024


@dataclass(frozen=True)
class Segment:
    """One source of the final compose: a part as it is, or several parts copied into one object."""

    parts: tuple[PartRecord, ...]

    @property
    def coalesced(self) -> bool:
        return len(self.parts) > 1

    @property
    def bytes(self) -> int:
        return sum(part.bytes for part in self.parts)


def plan_segments(parts: list[PartRecord], min_bytes: int = MIN_COMPOSE_SOURCE_BYTES) -> list[Segment]:
    """Group consecutive parts so that every segment but the last holds at least `min_bytes`."""
    segments: list[Segment] = []
    run: list[PartRecord] = []
    for part in parts:
        if not run and part.bytes >= min_bytes:
            segments.append(Segment((part,)))
            continue
        run.append(part)
        if sum(p.bytes for p in run) >= min_bytes:
            segments.append(Segment(tuple(run)))
            run = []
    if run:
        segments.append(Segment(tuple(run)))
    return segments
