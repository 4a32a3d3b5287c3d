"""The blob-store contract, run against the local directory store and MinIO's client on moto."""
from __future__ import annotations

import asyncio
import hashlib
import random
import tracemalloc

import pytest

from shared.stores.blobs import BlobNotFound, BlobTooLarge

MiB = 1 << 20


def random_bytes(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


async def chunked(data: bytes, size: int = 256 * 1024):
    for start in range(0, len(data), size):
        yield data[start:start + size]


async def failing_after(data: bytes, error: Exception):
    async for chunk in chunked(data, MiB):
        yield chunk
    raise error


async def test_put_reports_size_and_sha256_and_reads_back(blob_case):
    data = random_bytes(3 * MiB + 11, seed=1)

    result = await blob_case.store.put_stream("org-a/files/small.bin", chunked(data))

    assert (result.key, result.size, result.sha256) == ("org-a/files/small.bin", len(data),
                                                        hashlib.sha256(data).hexdigest())
    assert (await blob_case.store.stat("org-a/files/small.bin")).size == len(data)
    assert await blob_case.store.get_range("org-a/files/small.bin") == data


async def test_empty_stream_stores_an_empty_object(blob_case):
    result = await blob_case.store.put_stream("empty", chunked(b""))

    assert (result.size, result.sha256) == (0, hashlib.sha256(b"").hexdigest())
    assert (await blob_case.store.stat("empty")).size == 0
    assert await blob_case.store.get_range("empty") == b""


async def test_streamed_put_of_200_mib_keeps_memory_bounded(blob_case):
    blocks = [random_bytes(MiB, seed) for seed in range(4)]  # made before measuring
    count = 200
    expected = hashlib.sha256()
    for index in range(count):
        expected.update(blocks[index % 4])

    async def source():
        for index in range(count):
            yield blocks[index % 4]

    tracemalloc.start()
    try:
        result = await blob_case.store.put_stream("big/200mib.safetensors", source())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert result.size == count * MiB
    assert result.sha256 == expected.hexdigest()
    assert (await blob_case.store.stat("big/200mib.safetensors")).size == count * MiB
    tail = await blob_case.store.get_range("big/200mib.safetensors", count * MiB - 100)
    assert tail == blocks[(count - 1) % 4][-100:]
    # the whole object is 200 MiB; a put that buffered it would peak far above this
    assert peak < 64 * MiB, f"peak Python allocation {peak / MiB:.1f} MiB during the put"


async def test_ranged_reads_return_exactly_the_bytes_asked_for(blob_case):
    data = random_bytes(3 * MiB + 17, seed=2)
    await blob_case.store.put_stream("ranges.bin", chunked(data))
    size = len(data)

    cases = [(0, 16), (MiB + 5, 1000), (size - 10, None), (size - 10, 100), (size, None), (size + 5, 10), (7, 0)]
    for offset, length in cases:
        end = size if length is None else offset + length
        assert await blob_case.store.get_range("ranges.bin", offset, length) == data[offset:end], (offset, length)


async def test_iter_range_streams_the_range_in_bounded_chunks(blob_case):
    data = random_bytes(3 * MiB, seed=3)
    await blob_case.store.put_stream("iter.bin", chunked(data))

    chunks = [chunk async for chunk in blob_case.store.iter_range("iter.bin", 100, 2 * MiB, chunk_size=300_000)]

    assert b"".join(chunks) == data[100:100 + 2 * MiB]
    assert max(len(chunk) for chunk in chunks) <= 300_000
    whole = [chunk async for chunk in blob_case.store.iter_range("iter.bin")]
    assert b"".join(whole) == data


async def test_reading_a_missing_key_raises_not_found(blob_case):
    with pytest.raises(BlobNotFound):
        await blob_case.store.get_range("nope")
    with pytest.raises(BlobNotFound):
        await blob_case.store.get_range("nope", 0, 0)
    with pytest.raises(BlobNotFound):
        await blob_case.store.stat("nope")
    with pytest.raises(BlobNotFound):
        [chunk async for chunk in blob_case.store.iter_range("nope")]


async def test_compose_assembles_three_parts_in_order(blob_case):
    # S3 assembles server-side only when every part but the last is at least 5 MiB
    parts = [random_bytes(5 * MiB, 4), random_bytes(5 * MiB + 3, 5), random_bytes(MiB + 7, 6)]
    for number, part in enumerate(parts):
        await blob_case.store.put_stream(f"upload/part-{number}", chunked(part, MiB))

    info = await blob_case.store.compose("files/assembled.bin", [f"upload/part-{n}" for n in range(3)])

    whole = b"".join(parts)
    assert info.size == len(whole)
    assert await blob_case.store.get_range("files/assembled.bin") == whole
    assert await blob_case.store.get_range("upload/part-1") == parts[1]  # sources are left alone


async def test_compose_accepts_parts_smaller_than_s3s_minimum(blob_case):
    parts = [random_bytes(100_000, 7), b"x", random_bytes(70_000, 8)]
    for number, part in enumerate(parts):
        await blob_case.store.put_stream(f"small/part-{number}", chunked(part))

    info = await blob_case.store.compose("small/assembled", [f"small/part-{n}" for n in range(3)])

    assert info.size == sum(map(len, parts))
    assert await blob_case.store.get_range("small/assembled") == b"".join(parts)


async def test_compose_with_a_missing_source_stores_nothing(blob_case):
    await blob_case.store.put_stream("present", chunked(b"abc"))

    with pytest.raises(BlobNotFound):
        await blob_case.store.compose("never", ["present", "absent"])

    with pytest.raises(BlobNotFound):
        await blob_case.store.stat("never")


async def test_a_put_whose_source_fails_leaves_nothing(blob_case):
    # 20 MiB: past the first 16 MiB part, so MinIO's multipart upload has begun
    with pytest.raises(ConnectionResetError):
        await blob_case.store.put_stream("aborted.bin", failing_after(random_bytes(20 * MiB, 9),
                                                                       ConnectionResetError("client went away")))

    with pytest.raises(BlobNotFound):
        await blob_case.store.stat("aborted.bin")
    assert await blob_case.leftovers() == []


async def test_a_put_past_max_bytes_is_refused_and_leaves_nothing(blob_case):
    with pytest.raises(BlobTooLarge):
        await blob_case.store.put_stream("too-big.bin", chunked(random_bytes(24 * MiB, 10), MiB),
                                         max_bytes=20 * MiB)

    with pytest.raises(BlobNotFound):
        await blob_case.store.stat("too-big.bin")
    assert await blob_case.leftovers() == []


async def test_a_failed_overwrite_keeps_the_previous_object(blob_case):
    await blob_case.store.put_stream("kept.bin", chunked(b"version one"))

    with pytest.raises(RuntimeError):
        await blob_case.store.put_stream("kept.bin", failing_after(b"version two", RuntimeError("boom")))

    assert await blob_case.store.get_range("kept.bin") == b"version one"


async def test_a_put_replaces_an_existing_object(blob_case):
    await blob_case.store.put_stream("replaced", chunked(b"old contents"))
    await blob_case.store.put_stream("replaced", chunked(b"new"))

    assert await blob_case.store.get_range("replaced") == b"new"


async def test_delete_removes_the_object_and_a_missing_key_is_fine(blob_case):
    await blob_case.store.delete("never-existed")
    await blob_case.store.put_stream("org-a/doomed", chunked(b"bye"))

    await blob_case.store.delete("org-a/doomed")

    with pytest.raises(BlobNotFound):
        await blob_case.store.stat("org-a/doomed")


async def test_download_to_writes_the_object_to_a_local_file(blob_case, tmp_path):
    data = random_bytes(2 * MiB + 1, seed=11)
    await blob_case.store.put_stream("weights/adapter.safetensors", chunked(data))
    target = tmp_path / "cache" / "adapter.safetensors"

    await blob_case.store.download_to("weights/adapter.safetensors", str(target))

    assert target.read_bytes() == data
    with pytest.raises(BlobNotFound):
        await blob_case.store.download_to("weights/missing", str(tmp_path / "missing"))


@pytest.mark.parametrize("key", ["../escape", "a/../../b", "/etc/passwd", "a//b", "", "./a"])
async def test_keys_that_could_leave_the_store_are_refused(blob_case, key):
    with pytest.raises(ValueError):
        await blob_case.store.put_stream(key, chunked(b"x"))
    with pytest.raises(ValueError):
        await blob_case.store.get_range(key)


async def test_ready_once_started(blob_case):
    assert await blob_case.store.ready() is True


async def test_a_cancelled_put_leaves_nothing(blob_case):
    # aiohttp cancels the handler when the uploading client disconnects
    stalled = asyncio.Event()

    async def source_that_stalls():
        async for chunk in chunked(random_bytes(20 * MiB, 12), MiB):
            yield chunk
        stalled.set()
        await asyncio.Event().wait()

    put = asyncio.create_task(blob_case.store.put_stream("cancelled.bin", source_that_stalls()))
    await stalled.wait()
    put.cancel()

    with pytest.raises(asyncio.CancelledError):
        await put
    with pytest.raises(BlobNotFound):
        await blob_case.store.stat("cancelled.bin")
    assert await blob_case.leftovers() == []
