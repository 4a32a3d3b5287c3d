"""The in-repo torch engine behind the worker's engine interface (`engines.base.ServingEngine`)."""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

from services.gpu_worker.adapters.adapter_files import load_adapter
from services.gpu_worker.adapters.adapter_weights import AdapterWeights
from services.gpu_worker.adapters.engine_check import check_applied
from services.gpu_worker.engines.torch_engine.engine import EngineObserver
from services.gpu_worker.engines.torch_engine.engine_loop import EngineLoop
from services.gpu_worker.engines.torch_engine.model_host import EngineOptions, ModelHost, load_host
from services.gpu_worker.engines.torch_engine.sequence import GenerationRequest, RequestUpdate
from shared.catalogue.catalogue import ModelEntry
from shared.catalogue.engines import capabilities


class TorchEngine:
    name = "torch"

    def __init__(self, entry: ModelEntry, options: EngineOptions, observer: EngineObserver | None = None):
        self.entry, self.options, self.observer = entry, options, observer
        self.capabilities = capabilities("torch")
        self.host: ModelHost | None = None
        self.loop: EngineLoop | None = None

    async def start(self) -> None:
        self.host = await asyncio.to_thread(load_host, self.entry, self.options, self.observer)
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
        return weights

    def generate(self, request: GenerationRequest) -> AsyncIterator[RequestUpdate]:
        return self.loop.generate(request)

    def cancel(self, request_id: str) -> None:
        self.loop.cancel(request_id)
