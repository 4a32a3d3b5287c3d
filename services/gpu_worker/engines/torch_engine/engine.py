"""Continuous batching over many adapters: one `step()` admits waiting requests, prefills them, then
decodes one token for every running sequence, whatever adapter each uses.

All torch work happens inside `step()`, on whichever single thread drives the engine;
`submit` and `cancel` may be called from any thread (they only queue).
"""
from __future__ import annotations

import queue
import time
from collections import deque
from collections.abc import Callable

import torch

from services.gpu_worker.engines.torch_engine.lora_bank import LoraBank
from services.gpu_worker.engines.torch_engine.lora_ops import NO_ADAPTER
from services.gpu_worker.engines.torch_engine.runner import ModelRunner
from services.gpu_worker.engines.torch_engine.sampling import RowSampler, sample_rows
from services.gpu_worker.engines.torch_engine.sequence import (
    GenerationRequest,
    RequestUpdate,
    Sequence,
    rejected,
)
from services.gpu_worker.engines.torch_engine.slots import Placement, SlotTable
from services.gpu_worker.engines.torch_engine.text_stream import TextStream
from services.gpu_worker.errors import CONTEXT_TOO_LONG, INVALID_REQUEST, OUTPUT_NONFINITE


class EngineObserver:
    """Hooks for metrics; the default records nothing."""

    def adapter_placed(self, placement: Placement, seconds: float) -> None: ...

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
        self._inbox: queue.SimpleQueue[tuple[str, object]] = queue.SimpleQueue()
        self.waiting: deque[GenerationRequest] = deque()
        self.by_row: list[Sequence] = []  # running sequences, index == cache row

    # -- any thread ---------------------------------------------------------------------
    def submit(self, request: GenerationRequest) -> None:
        self._inbox.put(("submit", request))

    def cancel(self, request_id: str) -> None:
        self._inbox.put(("cancel", request_id))

    def has_work(self) -> bool:
        return bool(self.waiting or self.by_row or not self._inbox.empty())

    # -- the engine's thread ------------------------------------------------------------
    def step(self) -> list[RequestUpdate]:
        updates: list[RequestUpdate] = []
        started = time.perf_counter()
        self._drain_inbox(updates)
        admitted = self._admit()
        if admitted:
            self._prefill(admitted, updates)
        decoded = len(self.by_row)
        if decoded:
            self._decode_step(updates)
        self.observer.stepped(decoded, len(admitted) + decoded, time.perf_counter() - started)
        return updates

    def abort_all(self, code: str, message: str) -> list[RequestUpdate]:
        """Fail every waiting and running request (after an unexpected error in a step)."""
        updates = [rejected(r, code, message) for r in self.waiting]
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
        elif request.max_tokens < 1:
            updates.append(rejected(request, INVALID_REQUEST, "max_tokens must be at least 1"))
        else:
            self.waiting.append(request)

    def _cancel(self, request_id: str, updates: list[RequestUpdate]) -> None:
        for request in list(self.waiting):
            if request.request_id == request_id:
                self.waiting.remove(request)
                updates.append(RequestUpdate(request_id, finished=True, finish_reason="cancelled",
                                             prompt_tokens=len(request.prompt)))
        for sequence in list(self.by_row):
            if sequence.request_id == request_id:
                self._retire([sequence])
                updates.append(sequence.finished("cancelled"))

    def _admit(self) -> list[Sequence]:
        admitted: list[Sequence] = []
        budget = self.prefill_token_budget
        for request in list(self.waiting):
            if len(admitted) >= self.runner.cache.free_rows or (admitted and len(request.prompt) > budget):
                break
            slot = self._slot_for(request)
            if slot is None:
                continue  # every slot serves a running sequence; a later request may not need one
            self.waiting.remove(request)
            budget -= len(request.prompt)
            self.observer.admitted(time.monotonic() - request.submitted_at)
            text = TextStream(self._decode, request.stop)
            admitted.append(Sequence(request, RowSampler(request.sampling, self.runner.device), text, slot=slot))
        return admitted

    def _slot_for(self, request: GenerationRequest) -> int | None:
        if request.adapter_key is None:
            return NO_ADAPTER
        started = time.perf_counter()
        placement = self.slots.place(request.adapter_key)
        if placement is None:
            return None
        if placement.loaded:
            if request.adapter is None:
                raise ValueError(f"adapter {request.adapter_key} is not in a slot and came without weights")
            self.bank.load(placement.slot, request.adapter)
        self.slots.pin(request.adapter_key)
        self.observer.adapter_placed(placement, time.perf_counter() - started)
        return placement.slot

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
        tokens = sample_rows(torch.nan_to_num(logits), [s.sampler for s in sequences], self.vocab_limit)
        done: list[Sequence] = []
        for sequence, token, ok in zip(sequences, tokens, finite):
            if not ok:
                updates.append(sequence.failed(OUTPUT_NONFINITE, "the model produced non-finite logits"))
                done.append(sequence)
                continue
            update = self._take(sequence, token)
            if update is None:
                continue
            updates.append(update)
            if update.finished:
                done.append(sequence)
        self._retire(done)

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
