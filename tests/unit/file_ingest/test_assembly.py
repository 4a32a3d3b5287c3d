"""Assembling upload parts: every compose S3 is asked for is one it accepts, and the bytes come out in order."""
from __future__ import annotations

import hashlib
import os

from hypothesis import given
from hypothesis import strategies as st

from services.file_ingest.assembly import assemble
from services.file_ingest.domain.assembly import MIN_COMPOSE_SOURCE_BYTES, plan_segments
from services.file_ingest.domain.uploads import PartRecord
from shared.stores.local_blobs import LocalBlobStore
from shared.stores.minio_blobs import server_side_compose_possible

MiB = 1024 * 1024


def parts_of(sizes: list[int]) -> list[PartRecord]:
    return [PartRecord(id=f"part_{i}", bytes=size, object_key=f"parts/{i}", created_at=0)
            for i, size in enumerate(sizes)]


part_sizes = st.lists(st.integers(min_value=1, max_value=12 * MiB), min_size=1, max_size=40)


@given(part_sizes)
def test_every_plan_is_a_compose_s3_accepts_and_keeps_the_order(sizes):
    parts = parts_of(sizes)
    segments = plan_segments(parts)
    assert [p.id for s in segments for p in s.parts] == [p.id for p in parts]
    assert server_side_compose_possible([s.bytes for s in segments])


@given(part_sizes)
def test_large_parts_are_only_copied_to_lift_a_run_of_small_ones(sizes):
    segments = plan_segments(parts_of(sizes))
    for segment in segments:
        if segment.coalesced:
            # a copied run holds small parts only, except perhaps the one part that lifted it over the minimum
            assert all(p.bytes < MIN_COMPOSE_SOURCE_BYTES for p in segment.parts[:-1])


def test_plans_for_the_usual_cases():
    def shape(sizes):
        return [len(s.parts) for s in plan_segments(parts_of(sizes))]

    assert shape([MiB] * 12) == [5, 5, 2]
    assert shape([6 * MiB, 6 * MiB, MiB]) == [1, 1, 1]
    assert shape([MiB, 6 * MiB, MiB]) == [2, 1]
    assert shape([3 * MiB]) == [1]


class S3RulesStore(LocalBlobStore):
    """A local store that refuses what S3's compose refuses, and remembers what it was asked."""

    def __init__(self, root):
        super().__init__(root)
        self.composes: list[list[int]] = []

    async def compose(self, key, source_keys):
        sizes = [(await self.stat(source)).size for source in source_keys]
        self.composes.append(sizes)
        if not server_side_compose_possible(sizes):
            raise ValueError(f"S3 would refuse a compose of {sizes}")
        return await super().compose(key, source_keys)


async def test_assemble_mixed_parts_into_one_object_and_clean_up(tmp_path):
    store = S3RulesStore(tmp_path)
    await store.start()
    sizes = [MiB, 2 * MiB, 6 * MiB, MiB + 1, 7 * MiB, 3, 2 * MiB]
    blobs = [os.urandom(size) for size in sizes]
    parts = parts_of(sizes)
    for part, data in zip(parts, blobs):
        await store.put_stream(part.object_key, _one(data))

    digest = await assemble(store, "files/out", "scratch/u1", parts)

    whole = b"".join(blobs)
    assert await store.get_range("files/out") == whole
    assert digest.size == len(whole) and digest.sha256.hexdigest() == hashlib.sha256(whole).hexdigest()
    assert digest.md5.hexdigest() == hashlib.md5(whole).hexdigest()
    assert len(store.composes) == 1 and len(store.composes[0]) < len(sizes)
    leftovers = sorted(str(p.relative_to(tmp_path / "objects")) for p in (tmp_path / "objects").rglob("*")
                       if p.is_file())
    assert leftovers == ["files/out"] + sorted(p.object_key for p in parts)


async def _one(data: bytes):
    yield data
