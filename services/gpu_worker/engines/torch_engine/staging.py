"""Adapters brought into slots without stalling the batch.

A request whose adapter is in no slot starts its staging when the engine accepts it: the factors
are prepared for the bank (device, dtype, transposes; on a GPU a side stream's host-to-device copy)
on the stager's own thread while the engine keeps stepping. Between two steps, on the engine's
thread, a staged adapter takes a slot (the eviction policy picks the victim) and is copied in, so
no forward ever sees a half-written slot; meanwhile its requests wait and every other row runs.

No deadlock and no starvation: operator pins are fewer than the slots, and a request that has
waited longer than `wait_bound` for a slot names the least recently used unpinned adapter as its
victim: that adapter takes no new rows until its running ones finish, then the request evicts it.
"""
from __future__ import annotations

import time
from collections.abc import Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

import torch

from services.gpu_worker.engines.torch_engine.lora_bank import LoraBank, StagedAdapter
from services.gpu_worker.engines.torch_engine.lora_ops import NO_ADAPTER
from services.gpu_worker.engines.torch_engine.sequence import GenerationRequest, Sequence
from services.gpu_worker.engines.torch_engine.slots import SlotTable
from shared.logging import get_logger

log = get_logger("gpu_worker.staging")
DEFAULT_WAIT_BOUND_SECONDS = 5.0
IDLE_WAIT_SECONDS = 0.5  # an empty batch waits this long at most for a staging (the inbox is checked after)


class Stager:
    """Runs `LoraBank.stage` on a thread of its own (and a side CUDA stream on a GPU)."""

    def __init__(self, bank: LoraBank):
        self.bank = bank
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="stager")
        device = next((t.device for t in bank.targets.values()), torch.device("cpu"))
        self._stream = torch.cuda.Stream(device) if device.type == "cuda" else None

    def stage(self, weights) -> Future[tuple[StagedAdapter, float]]:
        return self._executor.submit(self._stage, weights)

    def _stage(self, weights) -> tuple[StagedAdapter, float]:
        started = time.perf_counter()
        if self._stream is None:
            staged = self.bank.stage(weights)
        else:
            with torch.cuda.stream(self._stream):
                staged = self.bank.stage(weights)
            self._stream.synchronize()  # the copies are complete before the engine's stream reads them
        return staged, time.perf_counter() - started

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


class SlotLoader:
    def __init__(self, bank: LoraBank, slots: SlotTable, observer, stager: Stager | None = None,
                 wait_bound: float = DEFAULT_WAIT_BOUND_SECONDS, max_staged: int | None = None):
        self.bank, self.slots, self.observer = bank, slots, observer
        self.stager = stager or Stager(bank)
        self.wait_bound = wait_bound
        self.max_staged = max_staged or slots.num_slots  # staged copies held at once (memory)
        self._staging: dict[str, Future[tuple[StagedAdapter, float]]] = {}
        self._cold_since: dict[str, float] = {}  # request id -> accepted at, for requests whose adapter was cold
        self.draining: str | None = None  # the wait bound's victim: it takes no new rows

    # -- as requests come and go ---------------------------------------------------------
    def accepted(self, request: GenerationRequest) -> None:
        key = request.adapter_key
        if key is None:
            return
        resident = self.slots.slot_of(key) is not None
        self.observer.adapter_looked_up(resident)
        if not resident:
            self._cold_since[request.request_id] = time.monotonic()
            self._start(key, request)

    def dropped(self, request_id: str) -> None:
        self._cold_since.pop(request_id, None)

    def admitted(self, request: GenerationRequest) -> None:
        since = self._cold_since.pop(request.request_id, None)
        if since is not None:
            self.observer.load_waited(time.monotonic() - since)

    def reset(self) -> None:
        for future in self._staging.values():
            future.cancel()
        self._staging.clear()
        self._cold_since.clear()
        self.draining = None

    def close(self) -> None:
        self.reset()
        self.stager.close()

    # -- each step -----------------------------------------------------------------------
    def prepare(self, waiting: Iterable[Sequence]) -> None:
        """Stage what the waiting requests need (oldest first, within the bound); drop what none needs."""
        needed: dict[str, GenerationRequest] = {}
        starving = False
        for sequence in waiting:
            request, key = sequence.request, sequence.request.adapter_key
            if key is not None and self.slots.slot_of(key) is None:
                needed.setdefault(key, request)
                starving = starving or self._starving(request)
        for key in [k for k in self._staging if k not in needed]:
            self._staging.pop(key).cancel()
        for key, request in needed.items():
            self._start(key, request)
        if not starving:
            self.draining = None

    def wait_if_idle(self, running: bool) -> None:
        """With no row running there is nothing to overlap: wait for a staging instead of spinning."""
        pending = [f for f in self._staging.values() if not f.done()]
        if not running and pending:
            wait(pending, timeout=IDLE_WAIT_SECONDS, return_when=FIRST_COMPLETED)

    def slot_for(self, request: GenerationRequest, queued: frozenset[str]) -> int | None:
        """The request's slot, pinned for it; None while it must wait. Raises if its adapter cannot be placed."""
        key = request.adapter_key
        if key is None:
            return NO_ADAPTER
        slot = self.slots.slot_of(key)
        if slot is not None:
            if key == self.draining:
                return None
            self.slots.touch(key)
            self.slots.pin(key)
            return slot
        if request.adapter is None:
            raise ValueError(f"adapter {key} is not in a slot and came without weights")
        future = self._staging.get(key)
        if future is None or not future.done():
            return None
        if future.exception() is not None:
            del self._staging[key]  # a later request for it stages afresh
            raise future.exception()
        staged, staged_seconds = future.result()
        return self._commit(request, staged, staged_seconds, queued)

    def _commit(self, request: GenerationRequest, staged: StagedAdapter, staged_seconds: float,
                queued: frozenset[str]) -> int | None:
        key = request.adapter_key
        placement = self.slots.place(key, queued, prefer=self.draining)
        if placement is None:
            self._maybe_drain(request)
            return None
        del self._staging[key]
        if placement.evicted is not None and placement.evicted == self.draining:
            self.draining = None
        started = time.perf_counter()
        try:
            self.bank.commit(placement.slot, staged)
            _keep_until_copied(staged)
        except Exception:
            self.slots.forget(key)  # the slot holds none of its weights: never reuse it
            raise
        self.slots.pin(key)
        self.observer.adapter_placed(placement, staged_seconds + time.perf_counter() - started)
        return placement.slot

    def _starving(self, request: GenerationRequest) -> bool:
        since = self._cold_since.get(request.request_id)
        return since is not None and time.monotonic() - since >= self.wait_bound

    def _maybe_drain(self, request: GenerationRequest) -> None:
        if self.draining is None and self._starving(request):
            self.draining = self.slots.least_recently_used()
            log.info("slot_wait_bound_reached", request_id=request.request_id, draining=self.draining)

    def _start(self, key: str, request: GenerationRequest) -> None:
        if key in self._staging or request.adapter is None or len(self._staging) >= self.max_staged:
            return
        self._staging[key] = self.stager.stage(request.adapter)


def _keep_until_copied(staged: StagedAdapter) -> None:
    """On a GPU the copy into the slot runs on the engine's stream: the staged memory must not be reused
    (by the stager's stream) before it has run."""
    for factors in staged.factors.values():
        for tensor in (factors.a, factors.b):
            if tensor.is_cuda:
                tensor.record_stream(torch.cuda.current_stream(tensor.device))
