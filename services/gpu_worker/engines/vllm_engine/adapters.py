"""Which adapters vLLM holds, driven by our cache: load before evict, ids from a counter.

vLLM keeps up to `max_cpu_loras` registered adapters; we register at most one fewer (see
`model_dir.registered_capacity`), so a new
adapter is added before the least recently used idle one is removed, and an adapter a running
request uses is never removed. When every registered adapter is in use, a request for another one
waits for one to be released: vLLM must never evict on its own (past its capacity, rows of a mixed
batch were seen served with another row's adapter). `lora_int_id`s come from a counter, never from a hash of an id:
a collision would serve one org's adapter to another.

Operators' pins (`pinned(key)`, the worker's residency) are never removed, and vLLM pins them too (`pin_lora`: kept
in its GPU slots and CPU cache). vLLM has no unpin: an adapter whose pin was lifted is removed from vLLM once idle,
and registered again, unpinned, when a request needs it.
"""
from __future__ import annotations

import asyncio
import itertools
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from vllm.lora.request import LoRARequest


@dataclass(frozen=True)
class VllmAdapter:
    """An adapter rewritten for vLLM on local disk (what the worker's CPU tier holds for this engine)."""

    key: str
    path: Path
    nbytes: int


class RegisteredAdapters:
    def __init__(self, llm, capacity: int, pinned: Callable[[str], bool] = lambda key: False):
        self.llm = llm
        self.capacity = capacity
        self.pinned = pinned
        self._ids = itertools.count(1)
        self._registered: OrderedDict[str, LoRARequest] = OrderedDict()
        self._in_use: dict[str, int] = {}
        self._pinned_in_vllm: set[str] = set()
        self._changed = asyncio.Condition()

    def __contains__(self, key: str) -> bool:
        return key in self._registered

    @property
    def in_use(self) -> int:
        """Adapters a running request uses now."""
        return len(self._in_use)

    async def acquire(self, adapter: VllmAdapter) -> LoRARequest:
        """The adapter's LoRARequest, registered with vLLM; `release` it when its request ends."""
        async with self._changed:
            await self._drop_lifted_pins()
            await self._changed.wait_for(lambda: adapter.key in self._registered or self._has_room())
            self._in_use[adapter.key] = self._in_use.get(adapter.key, 0) + 1
            request = self._registered.get(adapter.key)
            if request is None:
                request = self._new_request(adapter)
                try:
                    await self.llm.add_lora(request)
                except BaseException:
                    self._unuse(adapter.key)
                    raise
                self._registered[adapter.key] = request
            self._registered.move_to_end(adapter.key)
            if self.pinned(adapter.key) and adapter.key not in self._pinned_in_vllm:
                await self.llm.pin_lora(request.lora_int_id)
                self._pinned_in_vllm.add(adapter.key)
            await self._trim()
            return request

    def release(self, key: str) -> None:
        self._unuse(key)
        asyncio.get_running_loop().create_task(self._notify())

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    def _unuse(self, key: str) -> None:
        left = self._in_use.get(key, 0) - 1
        if left > 0:
            self._in_use[key] = left
        else:
            self._in_use.pop(key, None)

    def _removable(self, key: str) -> bool:
        return key not in self._in_use and not self.pinned(key)

    def _has_room(self) -> bool:
        return len(self._registered) < self.capacity or any(self._removable(k) for k in self._registered)

    def _new_request(self, adapter: VllmAdapter) -> LoRARequest:
        lora_id = next(self._ids)
        return LoRARequest(lora_name=f"lora-{lora_id}", lora_int_id=lora_id, lora_path=str(adapter.path))

    async def _trim(self) -> None:
        for key in list(self._registered):
            if len(self._registered) <= self.capacity:
                return
            if self._removable(key):
                await self._remove(key)

    async def _drop_lifted_pins(self) -> None:
        """vLLM keeps what it pinned in a GPU slot until removed: free the slots of pins operators lifted."""
        for key in [k for k in self._pinned_in_vllm if self._removable(k) and k in self._registered]:
            await self._remove(key)

    async def _remove(self, key: str) -> None:
        self._pinned_in_vllm.discard(key)
        await self.llm.remove_lora(self._registered.pop(key).lora_int_id)
