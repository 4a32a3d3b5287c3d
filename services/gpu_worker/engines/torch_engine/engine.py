"""Continuous batching over many adapters: one `step()` admits waiting requests, prefills them, then
decodes one token for every running sequence, whatever adapter each uses.

All torch work happens inside `step()`, on whichever single thread drives the engine, except
an adapter's staging for its slot, which runs on the stager's thread while the steps go on
(staging.py); `submit` and `cancel` may be called from any thread (they only queue). A request is checked and
its sampler built when it is accepted, and a failure that belongs to one row (its sampler, its
adapter's placement, its text) ends that row alone: only a failure of the shared batch itself
(the model's forward pass) raises out of `step()`, and then `abort_all` fails every request.
"""
from __future__ import annotations

import queue
import time
from collections import deque
from collections.abc import Callable

import torch

from services.gpu_worker.adapters.eviction import EvictionPolicy
from services.gpu_worker.engines.torch_engine.lora_bank import LoraBank
from services.gpu_worker.engines.torch_engine.runner import ModelRunner
from services.gpu_worker.engines.torch_engine.sampling import RowSampler, sample_rows
from services.gpu_worker.engines.torch_engine.sequence import (
    GenerationRequest,
    RequestUpdate,
    Sequence,
    rejected,
)
from services.gpu_worker.engines.torch_engine.slots import Placement, SlotTable
from services.gpu_worker.engines.torch_engine.staging import DEFAULT_WAIT_BOUND_SECONDS, SlotLoader
from services.gpu_worker.engines.torch_engine.text_stream import TextStream
from services.gpu_worker.errors import CONTEXT_TOO_LONG, INTERNAL, INVALID_REQUEST, OUTPUT_NONFINITE
from shared.logging import get_logger

log = get_logger("gpu_worker.engine")


class EngineObserver:
    """Hooks for metrics; the default records nothing."""

    def adapter_looked_up(self, resident: bool) -> None:
        """A request with an adapter was accepted; `resident`: its adapter was already in a slot."""

    def adapter_placed(self, placement: Placement, seconds: float) -> None:
        """An adapter was staged and copied into a slot (`seconds` both together), maybe evicting another."""

    def load_waited(self, seconds: float) -> None:
        """A request whose adapter was in no slot was admitted `seconds` after it was accepted."""

    def admitted(self, queue_wait_seconds: float) -> None: ...

    def stepped(self, batch_size: int, new_tokens: int, seconds: float) -> None: ...


class Engine:
    def __init__(self, runner: ModelRunner, bank: LoraBank, slots: SlotTable, decode: Callable[[list[int]], str],
                 stop_token_ids: set[int], vocab_limit: int, prefill_token_budget: int = 4096,
                 observer: EngineObserver | None = None):
        self.runner, self.bank, self.slots = runner, bank, slots
        self._decode, self.stop_token_ids, self.vocab_limit = decode, set(stop_token_ids), vocab_limit
        self.prefill_token_budget = prefill_token_budget
        self.observer = observer or EngineObserver()
        self.loader = SlotLoader(bank, slots, self.observer)
        self._inbox: queue.SimpleQueue[tuple[str, object]] = queue.SimpleQueue()
        self.waiting: deque[Sequence] = deque()  # accepted, sampler built, no row yet
        self.by_row: list[Sequence] = []  # running sequences, index == cache row

    # -- any thread ---------------------------------------------------------------------
    def submit(self, request: GenerationRequest) -> None:
        self._inbox.put(("submit", request))

    def cancel(self, request_id: str) -> None:
        self._inbox.put(("cancel", request_id))

    def has_work(self) -> bool:
        return bool(self.waiting or self.by_row or not self._inbox.empty())

    def adopt(self, policy: EvictionPolicy, wait_bound: float = DEFAULT_WAIT_BOUND_SECONDS) -> None:
        """Use the worker's eviction policy (its pins and queued jobs) and wait bound; before serving."""
        self.slots.policy = policy
        self.loader.wait_bound = wait_bound

    def close(self) -> None:
        self.loader.close()

    # -- the engine's thread ------------------------------------------------------------
    def step(self) -> list[RequestUpdate]:
        updates: list[RequestUpdate] = []
        started = time.perf_counter()
        self._drain_inbox(updates)
        self.loader.wait_if_idle(running=bool(self.by_row))
        admitted = self._admit(updates)
        if admitted:
            self._prefill(admitted, updates)
        decoded = len(self.by_row)
        if decoded:
            self._decode_step(updates)
        self.observer.stepped(decoded, len(admitted) + decoded, time.perf_counter() - started)
        return updates

    def abort_all(self, code: str, message: str) -> list[RequestUpdate]:
        """Fail every waiting and running request (after an unexpected error in a step)."""
        updates = [rejected(s.request, code, message) for s in self.waiting]
        self.waiting.clear()
        while not self._inbox.empty():
            kind, item = self._inbox.get()
            if kind == "submit":
                updates.append(rejected(item, code, message))
        running = list(self.by_row)
        # the failed step may have left rows or pins half-assigned: start both afresh
        self.by_row.clear()
        self.runner.cache.lengths.clear()
        self.slots.unpin_all()
        self.loader.reset()
        return updates + [s.failed(code, message) for s in running]

    def _drain_inbox(self, updates: list[RequestUpdate]) -> None:
        while not self._inbox.empty():
            kind, item = self._inbox.get()
            if kind == "submit":
                self._accept(item, updates)
            else:
                self._cancel(item, updates)

    def _accept(self, request: GenerationRequest, updates: list[RequestUpdate]) -> None:
        if not request.prompt or len(request.prompt) >= self.runner.max_len:
            updates.append(rejected(request, CONTEXT_TOO_LONG, f"the prompt has {len(request.prompt)} tokens; "
                                                               f"this model takes at most {self.runner.max_len - 1}"))
            return
        if request.max_tokens < 1:
            updates.append(rejected(request, INVALID_REQUEST, "max_tokens must be at least 1"))
            return
        try:
            sampler = RowSampler(request.sampling, self.runner.device)
        except (ValueError, TypeError, OverflowError, RuntimeError) as exc:
            updates.append(rejected(request, INVALID_REQUEST, f"the sampling parameters cannot be used: {exc}"))
            return
        self.waiting.append(Sequence(request, sampler, TextStream(self._decode, request.stop)))
        self.loader.accepted(request)  # a cold adapter starts staging now, while this step runs

    def _cancel(self, request_id: str, updates: list[RequestUpdate]) -> None:
        for waiting in list(self.waiting):
            if waiting.request_id == request_id:
                self.waiting.remove(waiting)
                self.loader.dropped(request_id)
                updates.append(waiting.finished("cancelled"))
        for sequence in list(self.by_row):
            if sequence.request_id == request_id:
                self._retire([sequence])
                updates.append(sequence.finished("cancelled"))

    def _admit(self, updates: list[RequestUpdate]) -> list[Sequence]:
        admitted: list[Sequence] = []
        budget = self.prefill_token_budget
        self.loader.prepare(self.waiting)
        queued = frozenset(s.request.adapter_key for s in self.waiting if s.request.adapter_key is not None)
        for sequence in list(self.waiting):
            request = sequence.request
            if len(admitted) >= self.runner.cache.free_rows or (admitted and len(request.prompt) > budget):
                break
            try:
                slot = self.loader.slot_for(request, queued)
            except Exception as exc:
                log.exception("adapter_placement_failed", request_id=request.request_id)
                self.waiting.remove(sequence)
                self.loader.dropped(request.request_id)
                updates.append(rejected(request, INTERNAL, f"the adapter could not be placed: {exc}"))
                continue
            if slot is None:
                continue  # its adapter is staging, or every slot serves running rows: later requests go on
            self.waiting.remove(sequence)
            budget -= len(request.prompt)
            self.loader.admitted(request)
            self.observer.admitted(time.monotonic() - request.submitted_at)
            sequence.slot = slot
            admitted.append(sequence)
        return admitted

    def _prefill(self, admitted: list[Sequence], updates: list[RequestUpdate]) -> None:
        rows, logits = self.runner.prefill([s.request.prompt for s in admitted], [s.slot for s in admitted])
        for sequence, row in zip(admitted, rows):
            sequence.row = row
            self.by_row.append(sequence)
        self._advance(admitted, logits, updates)

    def _decode_step(self, updates: list[RequestUpdate]) -> None:
        running = list(self.by_row)
        logits = self.runner.decode([s.tokens[-1] for s in running], [s.slot for s in running])
        self._advance(running, logits, updates)

    def _advance(self, sequences: list[Sequence], logits: torch.Tensor, updates: list[RequestUpdate]) -> None:
        finite = torch.isfinite(logits).all(dim=-1).tolist()
        tokens = self._sample(sequences, torch.nan_to_num(logits))
        done: list[Sequence] = []
        for sequence, token, ok in zip(sequences, tokens, finite):
            if not ok:
                update = sequence.failed(OUTPUT_NONFINITE, "the model produced non-finite logits")
            elif isinstance(token, Exception):
                update = sequence.failed(INTERNAL, f"sampling this request failed: {token}")
            else:
                update = self._take_or_fail(sequence, token)
            if update is None:
                continue
            updates.append(update)
            if update.finished:
                done.append(sequence)
        self._retire(done)

    def _sample(self, sequences: list[Sequence], logits: torch.Tensor) -> list[int | Exception]:
        samplers = [s.sampler for s in sequences]
        try:
            return sample_rows(logits, samplers, self.vocab_limit)
        except Exception:
            log.exception("batch_sampling_failed", rows=len(samplers))
            return [self._sample_one(logits[i:i + 1], sampler) for i, sampler in enumerate(samplers)]

    def _sample_one(self, logits: torch.Tensor, sampler: RowSampler) -> int | Exception:
        try:
            return sample_rows(logits, [sampler], self.vocab_limit)[0]
        except Exception as exc:  # noqa: BLE001 -- the caller fails this row alone
            return exc

    def _take_or_fail(self, sequence: Sequence, token: int) -> RequestUpdate | None:
        try:
            return self._take(sequence, token)
        except Exception as exc:
            log.exception("row_update_failed", request_id=sequence.request_id)
            return sequence.failed(INTERNAL, f"the request's output could not be produced: {exc}")

    def _take(self, sequence: Sequence, token: int) -> RequestUpdate | None:
        sequence.tokens.append(token)
        if token in self.stop_token_ids:
            return sequence.finished("stop")
        delta = sequence.text.push(token)
        if sequence.text.stopped:
            return sequence.finished("stop", delta)
        if len(sequence.tokens) >= sequence.request.max_tokens or self.runner.room_left(sequence.row) <= 0:
            return sequence.finished("length", delta)
        return sequence.progress(delta) if delta else None

    def _retire(self, sequences: list[Sequence]) -> None:
        # highest rows first: each release moves the current last row, which is never one still to retire
        for sequence in sorted(sequences, key=lambda s: s.row, reverse=True):
            moved = self.runner.release(sequence.row)
            if moved is not None:
                self.by_row[sequence.row] = self.by_row[moved]
                self.by_row[sequence.row].row = sequence.row
            self.by_row.pop()
            if sequence.request.adapter_key is not None:
                self.slots.unpin(sequence.request.adapter_key)
