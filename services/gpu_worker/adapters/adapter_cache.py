"""Checked adapters held in CPU memory, bounded in bytes, least recently used dropped first.

A miss leases both files from the disk cache (downloading once for all concurrent callers),
reads and checks them off the event loop, and only then caches them: a refused adapter is
never cached and never reaches a slot.
"""
from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

from services.gpu_worker.adapters.adapter_weights import AdapterWeights
from services.gpu_worker.adapters.disk_cache import DiskCache
from services.gpu_worker.errors import LOAD_FAILED, AdapterRejected, Problem
from shared.contracts.messages import AdapterRef
from shared.stores.blobs import BlobNotFound

# (adapter key, config path, weights path) -> the adapter checked and in its engine's form (has `nbytes`)
Loader = Callable[[str, Path, Path], AdapterWeights]


def adapter_key(ref: AdapterRef) -> str:
    """An adapter's identity in every cache: its files are immutable, so their ids name its content."""
    return f"{ref.lora_id}:{ref.config_file_id}:{ref.weights_file_id}"


class AdapterCache:
    def __init__(self, disk: DiskCache, loader: Loader, max_bytes: int,
                 on_load: Callable[[bool, float], None] | None = None):
        self.disk, self.loader, self.max_bytes = disk, loader, max_bytes
        self._on_load = on_load or (lambda hit, seconds: None)
        self._held: OrderedDict[str, AdapterWeights] = OrderedDict()
        self._loading: dict[str, asyncio.Future[AdapterWeights]] = {}

    def __contains__(self, key: str) -> bool:
        return key in self._held

    async def get(self, ref: AdapterRef) -> AdapterWeights:
        key = adapter_key(ref)
        if key in self._held:
            self._held.move_to_end(key)
            self._on_load(True, 0.0)
            return self._held[key]
        loading = self._loading.get(key)
        if loading is None:
            loading = asyncio.ensure_future(self._load(key, ref))
            self._loading[key] = loading
            loading.add_done_callback(lambda _: self._loading.pop(key, None))
        return await asyncio.shield(loading)

    async def _load(self, key: str, ref: AdapterRef) -> AdapterWeights:
        started = time.perf_counter()
        try:
            async with self.disk.lease(ref.config_object_key) as config_path, \
                    self.disk.lease(ref.weights_object_key) as weights_path:
                weights = await asyncio.to_thread(self.loader, key, config_path, weights_path)
        except BlobNotFound as exc:
            raise AdapterRejected([Problem(LOAD_FAILED, f"adapter file missing from the blob store: {exc}")]) from exc
        self._on_load(False, time.perf_counter() - started)
        self._held[key] = weights
        self._trim(keep=key)
        return weights

    def _trim(self, keep: str) -> None:
        used = sum(w.nbytes for w in self._held.values())
        for key in list(self._held):
            if used <= self.max_bytes:
                break
            if key != keep:
                used -= self._held.pop(key).nbytes
