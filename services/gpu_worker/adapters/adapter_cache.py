"""Checked adapters held in CPU memory, bounded in bytes, given up by the worker's eviction policy.

A miss leases both files from the disk cache (downloading once for all concurrent callers),
reads and checks them off the event loop, and only then caches them: a refused adapter is
never cached and never reaches a slot. When the tier is full the policy (eviction.py) picks
what goes: never an operator's pinned adapter, idle before queued, the lowest use score, LRU
last; and a newcomer worth less than what it would push out passes through uncached (its
callers still get it), so a burst of one-offs does not flush the adapters in steady use.
"""
from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

from services.gpu_worker.adapters.adapter_weights import AdapterWeights
from services.gpu_worker.adapters.disk_cache import DiskCache
from services.gpu_worker.adapters.eviction import NOT_ADMITTED, EvictionPolicy
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
                 on_load: Callable[[bool, float], None] | None = None, policy: EvictionPolicy | None = None,
                 on_evict: Callable[[str], None] | None = None):
        self.disk, self.loader, self.max_bytes = disk, loader, max_bytes
        self.policy = policy or EvictionPolicy()
        self._on_load = on_load or (lambda hit, seconds: None)
        self._on_evict = on_evict or (lambda reason: None)
        self._held: OrderedDict[str, AdapterWeights] = OrderedDict()  # least recently used first
        self._bytes = 0
        self._loading: dict[str, asyncio.Future[AdapterWeights]] = {}

    def __contains__(self, key: str) -> bool:
        return key in self._held

    @property
    def bytes_used(self) -> int:
        return self._bytes

    async def get(self, ref: AdapterRef) -> AdapterWeights:
        key = adapter_key(ref)
        self.policy.used(key)
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
        try:
            async with self.disk.lease(ref.config_object_key) as config_path, \
                    self.disk.lease(ref.weights_object_key) as weights_path:
                started = time.perf_counter()  # the disk tier has delivered: from here on, disk -> CPU
                weights = await asyncio.to_thread(self.loader, key, config_path, weights_path)
                seconds = time.perf_counter() - started
        except BlobNotFound as exc:
            raise AdapterRejected([Problem(LOAD_FAILED, f"adapter file missing from the blob store: {exc}")]) from exc
        self._on_load(False, seconds)
        self._keep(key, weights)
        return weights

    def _keep(self, key: str, weights: AdapterWeights) -> None:
        """Hold the newcomer if the policy finds room worth giving up for it."""
        victims: dict[str, str] = {}  # key -> reason
        freed = 0
        candidates = self._candidates()
        while self._bytes + weights.nbytes - freed > self.max_bytes:
            choice = self.policy.victim([k for k in candidates if k not in victims])
            if choice is None:
                break  # only pinned adapters left: run over the bound rather than drop a pin
            victim, reason = choice
            if not self.policy.admits(key, victim):
                self._on_evict(NOT_ADMITTED)
                return
            victims[victim] = reason
            freed += self._held[victim].nbytes
        for victim, reason in victims.items():
            self._bytes -= self._held.pop(victim).nbytes
            self._on_evict(reason)
        self._held[key] = weights
        self._bytes += weights.nbytes

    def _candidates(self) -> list[str]:
        protected = self.policy.protected(self._held)
        return [k for k in self._held if k not in protected]
