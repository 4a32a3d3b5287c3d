"""Disk and CPU caches: one download per cold adapter however many ask, bounded, refused ones never kept."""
import asyncio
import shutil
import time

import pytest

from services.gpu_worker.adapters.adapter_cache import AdapterCache
from services.gpu_worker.adapters.adapter_files import load_adapter
from services.gpu_worker.adapters.disk_cache import DiskCache
from services.gpu_worker.engines.torch_engine.targets import discover_targets
from services.gpu_worker.errors import AdapterRejected
from services.gpu_worker.models.tiny_model import build_model
from shared.contracts.messages import AdapterRef
from shared.stores.local_blobs import LocalBlobStore
from tests.unit.gpu_worker.support import PREFIX, per_expert

TARGETS = discover_targets(build_model())


class CountingBlobs(LocalBlobStore):
    def __init__(self, root):
        super().__init__(root)
        self.downloads = []

    async def download_to(self, key, path):
        self.downloads.append(key)
        await asyncio.sleep(0.01)  # slow enough that concurrent callers overlap
        await super().download_to(key, path)


async def put(blobs, key, path):
    async def chunks():
        yield path.read_bytes()

    await blobs.put_stream(key, chunks())


async def stored_adapter(blobs, directory, name) -> AdapterRef:
    await put(blobs, f"{name}/config", directory / "adapter_config.json")
    await put(blobs, f"{name}/weights", directory / "adapter_model.safetensors")
    return AdapterRef(lora_id=name, name=name, config_file_id=f"{name}-c", weights_file_id=f"{name}-w",
                      config_object_key=f"{name}/config", weights_object_key=f"{name}/weights")


def reader(key, config_path, weights_path):
    return load_adapter(config_path, weights_path, TARGETS, [PREFIX], 64, 1 << 30)


@pytest.fixture
async def blobs(tmp_path):
    store = CountingBlobs(tmp_path / "blobs")
    await store.start()
    return store


async def test_concurrent_requests_for_a_cold_adapter_download_it_once(blobs, tmp_path, adapter_dirs):
    ref = await stored_adapter(blobs, adapter_dirs["per_expert"], "a")
    cache = AdapterCache(DiskCache(blobs, tmp_path / "disk", 1 << 30), reader, 1 << 30)
    results = await asyncio.gather(*(cache.get(ref) for _ in range(5)))
    assert all(r is results[0] for r in results)
    assert sorted(blobs.downloads) == ["a/config", "a/weights"]
    await cache.get(ref)
    assert len(blobs.downloads) == 2


class SlowStart(DiskCache):
    """Any start-up scan after the first lags, and downloads linger on their partial files: a second scan then
    finds a download's partial file and deletes it (as it happened under load)."""

    scans = 0

    def _scan(self):
        SlowStart.scans += 1
        if SlowStart.scans > 1:
            time.sleep(0.05)
        super()._scan()


class LingeringBlobs(CountingBlobs):
    async def download_to(self, key, path):
        await super().download_to(key, path)
        await asyncio.sleep(0.1)


async def test_a_fresh_disk_cache_serves_concurrent_downloads_of_different_objects(tmp_path, adapter_dirs):
    blobs = LingeringBlobs(tmp_path / "blobs")
    await blobs.start()
    refs = [await stored_adapter(blobs, adapter_dirs["per_expert"], name) for name in "abcd"]
    cache = AdapterCache(SlowStart(blobs, tmp_path / "disk", 1 << 30), reader, 1 << 30)
    loaded = await asyncio.gather(*(cache.get(ref) for ref in refs))
    assert len({id(weights) for weights in loaded}) == 4 and len(blobs.downloads) == 8


async def test_the_disk_cache_keeps_within_its_bound_dropping_the_least_recently_used(blobs, tmp_path, adapter_dirs):
    size = (adapter_dirs["per_expert"] / "adapter_model.safetensors").stat().st_size
    refs = [await stored_adapter(blobs, adapter_dirs["per_expert"], name) for name in "abc"]
    disk = DiskCache(blobs, tmp_path / "disk", max_bytes=2 * size + 4096)
    for ref in refs:
        async with disk.lease(ref.weights_object_key):
            pass
    assert disk.bytes_used <= 2 * size + 4096
    async with disk.lease(refs[0].weights_object_key):  # the oldest went first
        pass
    assert blobs.downloads.count("a/weights") == 2 and blobs.downloads.count("c/weights") == 1


async def test_a_refused_adapter_is_never_cached(blobs, tmp_path):
    broken = per_expert(tmp_path / "nan", nan=True)
    ref = await stored_adapter(blobs, broken, "bad")
    cache = AdapterCache(DiskCache(blobs, tmp_path / "disk", 1 << 30), reader, 1 << 30)
    for _ in range(2):
        with pytest.raises(AdapterRejected) as caught:
            await cache.get(ref)
        assert caught.value.code == "weights_nonfinite"
    assert "bad:bad-c:bad-w" not in cache


async def test_a_missing_blob_is_a_load_failure(blobs, tmp_path):
    ref = AdapterRef(lora_id="gone", name="gone", config_file_id="c", weights_file_id="w",
                     config_object_key="gone/config", weights_object_key="gone/weights")
    cache = AdapterCache(DiskCache(blobs, tmp_path / "disk", 1 << 30), reader, 1 << 30)
    with pytest.raises(AdapterRejected) as caught:
        await cache.get(ref)
    assert caught.value.code == "load_failed"


async def test_files_left_by_an_earlier_run_are_reused(blobs, tmp_path, adapter_dirs):
    ref = await stored_adapter(blobs, adapter_dirs["per_expert"], "a")
    first = DiskCache(blobs, tmp_path / "disk", 1 << 30)
    async with first.lease(ref.weights_object_key):
        pass
    shutil.copy(adapter_dirs["per_expert"] / "adapter_config.json", tmp_path / "disk" / "x.partial-1-2")
    second = DiskCache(blobs, tmp_path / "disk", 1 << 30)
    async with second.lease(ref.weights_object_key) as path:
        assert path.exists()
    assert blobs.downloads == ["a/weights"]
    assert not (tmp_path / "disk" / "x.partial-1-2").exists()
