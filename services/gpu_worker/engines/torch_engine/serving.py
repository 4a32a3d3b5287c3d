"""The in-repo torch engine behind the worker's engine interface (`engines.base.ServingEngine`)."""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

from services.gpu_worker.adapters.adapter_files import load_adapter
from services.gpu_worker.adapters.adapter_weights import AdapterWeights
from services.gpu_worker.adapters.engine_check import check_applied
from services.gpu_worker.adapters.eviction import DEFAULT_HALF_LIFE_SECONDS, EvictionPolicy
from services.gpu_worker.adapters.residency import Residency
from services.gpu_worker.engines.torch_engine.engine import EngineObserver
from services.gpu_worker.engines.torch_engine.engine_loop import EngineLoop
from services.gpu_worker.engines.torch_engine.model_host import EngineOptions, ModelHost, load_host
from services.gpu_worker.engines.torch_engine.sequence import GenerationRequest, RequestUpdate
from services.gpu_worker.engines.torch_engine.staging import DEFAULT_WAIT_BOUND_SECONDS
from shared.catalogue.catalogue import ModelEntry
from shared.catalogue.engines import capabilities


@dataclass(frozen=True)
class SlotPolicy:
    """How the engine's slots are shared: the worker's pins and queued jobs, scores' half-life, the wait bound."""

    residency: Residency = field(default_factory=Residency)
    half_life: float = DEFAULT_HALF_LIFE_SECONDS
    wait_bound: float = DEFAULT_WAIT_BOUND_SECONDS


class TorchEngine:
    name = "torch"

    def __init__(self, entry: ModelEntry, options: EngineOptions, observer: EngineObserver | None = None,
                 slot_policy: SlotPolicy | None = None,
                 build_host: Callable[[ModelEntry, EngineOptions, EngineObserver | None], ModelHost] = load_host):
        self.entry, self.options, self.observer = entry, options, observer
        self.slot_policy = slot_policy or SlotPolicy()
        self._build_host = build_host  # another model than the catalogue's (the adapters benchmark)
        self.capabilities = capabilities("torch")
        self.host: ModelHost | None = None
        self.loop: EngineLoop | None = None

    async def start(self) -> None:
        self.host = await asyncio.to_thread(self._build_host, self.entry, self.options, self.observer)
        policy = self.slot_policy
        self.host.engine.adopt(EvictionPolicy(policy.residency, policy.half_life), policy.wait_bound)
        self.loop = EngineLoop(self.host.engine)
        self.loop.start()

    async def stop(self) -> None:
        if self.loop is not None:
            await self.loop.stop()

    @property
    def running(self) -> bool:
        return self.loop is not None and self.loop.running

    @property
    def slots_in_use(self) -> int:
        return self.host.engine.slots.in_use if self.host else 0

    def chat_prompt(self, messages: list[dict[str, str]]) -> list[int]:
        return self.host.chat_prompt(messages)

    def read_adapter(self, key: str, config_path: Path, weights_path: Path, max_bytes: int) -> AdapterWeights:
        weights = load_adapter(config_path, weights_path, self.host.targets, self.host.key_prefixes,
                               self.entry.max_rank, max_bytes)
        check_applied(weights, self.capabilities)
        return self._laid_out(weights)

    def _laid_out(self, weights: AdapterWeights) -> AdapterWeights:
        """On a CPU, the factors as the bank holds them (the transposes done here, on the CPU tier's loader
        thread, once per CPU load), so staging each slot load finds nothing left to do but the copy in.
        On a GPU the CPU tier keeps the plain factors: staging there is the side stream's copy anyway."""
        bank = self.host.engine.bank
        if any(target.device.type != "cpu" for target in bank.targets.values()):
            return weights
        return AdapterWeights(bank.stage(weights).factors)

    def generate(self, request: GenerationRequest) -> AsyncIterator[RequestUpdate]:
        return self.loop.generate(request)

    def cancel(self, request_id: str) -> None:
        self.loop.cancel(request_id)
