"""The worker's runtime state for one base model: its engine (torch or vLLM), the adapter caches, cancels.

Nothing connects or loads at construction; `start()` starts the engine (the model loads off the
event loop), `stop()` undoes it. The jobs talk to the engine only through this object.
"""
from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from services.gpu_worker.adapters.adapter_cache import AdapterCache, adapter_key
from services.gpu_worker.adapters.disk_cache import DiskCache
from services.gpu_worker.adapters.eviction import DEFAULT_HALF_LIFE_SECONDS, EvictionPolicy
from services.gpu_worker.adapters.residency import Residency
from services.gpu_worker.engines.base import PreparedAdapter, ServingEngine
from services.gpu_worker.engines.torch_engine.model_host import EngineOptions
from services.gpu_worker.engines.torch_engine.sampling import SamplingSpec
from services.gpu_worker.engines.torch_engine.sequence import GenerationRequest, RequestUpdate
from services.gpu_worker.engines.torch_engine.staging import DEFAULT_WAIT_BOUND_SECONDS
from services.gpu_worker.jobs.cancels import CancelBook
from services.gpu_worker.metrics import PrometheusObserver, record_eviction, record_load_wait, record_tier
from services.gpu_worker.org_share import OrgShare
from shared.bus.base import Bus
from shared.catalogue.catalogue import ModelEntry
from shared.contracts.cloudevents import Message
from shared.contracts.messages import AdapterRef, ChatMessage, SamplingParams
from shared.logging import correlation_id, get_logger
from shared.stores.blobs import BlobStore

log = get_logger("gpu_worker")
GiB = 1024**3


@dataclass(frozen=True)
class WorkerOptions:
    engine: EngineOptions = field(default_factory=EngineOptions)
    cache_dir: Path = Path(".loraserve/worker-cache")
    disk_cache_bytes: int = 20 * GiB
    cpu_cache_bytes: int = 4 * GiB
    max_adapter_bytes: int = 16 * GiB
    validation_max_tokens: int = 16
    org_max_running: int | None = None  # an org's share of the batch while others wait; None: half of it
    pinned_loras: tuple[str, ...] = ()  # LoRA ids never evicted once loaded; fewer than the slots
    slot_wait_bound: float = DEFAULT_WAIT_BOUND_SECONDS  # a request waiting longer for a slot evicts the LRU
    usage_half_life: float = DEFAULT_HALF_LIFE_SECONDS  # how fast the eviction policy forgets an adapter's uses

    @property
    def org_cap(self) -> int:
        return self.org_max_running or max(1, self.engine.max_batch // 2)


class Worker:
    def __init__(self, entry: ModelEntry, bus: Bus, blobs: BlobStore, source: str, options: WorkerOptions,
                 engine: ServingEngine | None = None):
        self.entry, self.bus, self.blobs, self.source, self.options = entry, bus, blobs, source, options
        self.cancels = CancelBook()
        self.share = OrgShare(options.engine.max_batch, options.org_cap)
        # raises PinLimit when the pins would fill every slot
        self.residency = Residency(max_pins=options.engine.num_slots - 1, pins=options.pinned_loras)
        self.engine = engine or self._torch_engine()
        self.adapters: AdapterCache | None = None

    def _torch_engine(self) -> ServingEngine:
        from services.gpu_worker.engines.torch_engine.serving import SlotPolicy, TorchEngine

        observer = PrometheusObserver(self.entry.id, lambda: self.engine.slots_in_use)
        policy = SlotPolicy(self.residency, self.options.usage_half_life, self.options.slot_wait_bound)
        return TorchEngine(self.entry, self.options.engine, observer, policy)

    @property
    def slug(self) -> str:
        return self.entry.slug

    # -- lifecycle ------------------------------------------------------------------
    async def start(self) -> None:
        await self.engine.start()
        disk = DiskCache(self.blobs, self.options.cache_dir / self.slug, self.options.disk_cache_bytes,
                         on_fetch=record_tier(self.entry.id, "disk"))
        self.adapters = AdapterCache(disk, self._read_adapter, self.options.cpu_cache_bytes,
                                     on_load=record_tier(self.entry.id, "cpu"),
                                     policy=EvictionPolicy(self.residency, self.options.usage_half_life),
                                     on_evict=record_eviction(self.entry.id, "cpu"))
        log.info("worker_model_loaded", model=self.entry.id, engine=self.engine.name,
                 slots=self.options.engine.num_slots, max_batch=self.options.engine.max_batch)

    async def stop(self) -> None:
        await self.engine.stop()

    async def ready(self) -> bool:
        return self.adapters is not None and self.engine.running

    def _read_adapter(self, key: str, config_path: Path, weights_path: Path) -> PreparedAdapter:
        return self.engine.read_adapter(key, config_path, weights_path, self.options.max_adapter_bytes)

    # -- work -----------------------------------------------------------------------
    async def adapter(self, ref: AdapterRef | None) -> PreparedAdapter | None:
        return None if ref is None else await self.adapters.get(ref)

    @contextlib.contextmanager
    def holding(self, ref: AdapterRef | None) -> Iterator[None]:
        """Count a job for its adapter while the worker holds it: the eviction policies keep such adapters."""
        with self.residency.holding(adapter_key(ref) if ref is not None else None):
            yield

    def prefetch(self, ref: AdapterRef | None) -> asyncio.Future[PreparedAdapter] | None:
        """Start bringing the job's adapter to CPU memory now (blob -> disk -> CPU), long before its turn."""
        if ref is None:
            return None
        fetch = asyncio.ensure_future(self.adapters.get(ref))
        fetch.add_done_callback(lambda done: done.cancelled() or done.exception())  # the awaiter reports it
        return fetch

    async def fetched(self, fetch: asyncio.Future[PreparedAdapter] | None) -> PreparedAdapter | None:
        """The prefetched adapter; the time a job still has to wait for it counts as a CPU-tier load wait."""
        if fetch is None:
            return None
        if fetch.done():
            return fetch.result()
        started = time.perf_counter()
        try:
            return await fetch
        finally:
            record_load_wait(self.entry.id, "cpu", time.perf_counter() - started)

    async def prompt(self, messages: list[ChatMessage]) -> list[int]:
        # a long prompt takes seconds to tokenize (4 MB: ~6 s): on a thread (the tokenizer releases the GIL)
        # the event loop keeps serving health checks, cancels and every other request meanwhile
        return await asyncio.to_thread(self.engine.chat_prompt, [m.model_dump() for m in messages])

    async def request(self, response_id: str, messages: list[ChatMessage], sampling: SamplingParams,
                      ref: AdapterRef | None, weights: PreparedAdapter | None) -> GenerationRequest:
        return self.request_for(response_id, await self.prompt(messages), sampling, ref, weights)

    def request_for(self, response_id: str, prompt: list[int], sampling: SamplingParams, ref: AdapterRef | None,
                    weights: PreparedAdapter | None) -> GenerationRequest:
        return GenerationRequest(
            request_id=f"{response_id}#{uuid.uuid4().hex[:12]}", prompt=prompt, max_tokens=sampling.max_tokens,
            sampling=SamplingSpec(sampling.temperature, sampling.top_p, sampling.seed), stop=list(sampling.stop),
            adapter_key=adapter_key(ref) if ref is not None else None, adapter=weights,
        )

    async def generate(self, response_id: str, request: GenerationRequest) -> AsyncIterator[RequestUpdate]:
        """The request's updates; a response cancelled before or while it runs ends 'cancelled'."""
        if self.cancels.is_cancelled(response_id):
            yield RequestUpdate(request.request_id, finished=True, finish_reason="cancelled",
                                prompt_tokens=len(request.prompt))
            return
        self.cancels.track(response_id, request.request_id)
        try:
            async for update in self.engine.generate(request):
                yield update
        finally:
            self.cancels.untrack(response_id, request.request_id)

    def cancel(self, response_id: str) -> None:
        for request_id in self.cancels.cancel(response_id):
            self.engine.cancel(request_id)

    async def publish(self, message: Message) -> None:
        await self.bus.publish(message, source=self.source, correlation_id=correlation_id.get())

