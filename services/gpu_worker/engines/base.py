"""The one interface the worker's jobs talk to, whichever engine serves the model.

An engine renders prompts with its model's chat template, checks an adapter (its own rules and its
declared capabilities) and holds it in the form it applies, runs requests with an optional adapter
streaming `RequestUpdate`s (text deltas, usage, finish reason), and cancels them. The adapter tiers
above it (blob store -> local disk -> CPU memory) are the worker's, the same for every engine.
"""
from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Protocol

from services.gpu_worker.engines.torch_engine.sequence import GenerationRequest, RequestUpdate
from shared.catalogue.engines import EngineCapabilities


class WorkerStopping(Exception):
    """The engine stopped before the request finished; the job goes back to its queue."""


class PreparedAdapter(Protocol):
    """An adapter checked and converted for one engine: what the worker's CPU tier holds."""

    @property
    def nbytes(self) -> int: ...


class ServingEngine(Protocol):
    name: str
    capabilities: EngineCapabilities

    async def start(self) -> None: ...

    async def stop(self) -> None:
        """Let running requests finish for a while; the rest raise `WorkerStopping`."""

    @property
    def running(self) -> bool: ...

    @property
    def slots_in_use(self) -> int: ...

    def chat_prompt(self, messages: list[dict[str, str]]) -> list[int]:
        """The conversation as prompt token ids (slow for long prompts: call it off the event loop)."""

    def read_adapter(self, key: str, config_path: Path, weights_path: Path, max_bytes: int) -> PreparedAdapter:
        """Check and convert an adapter (off the event loop); raises `AdapterRejected` listing every problem."""

    def generate(self, request: GenerationRequest) -> AsyncIterator[RequestUpdate]:
        """The request's updates until its final one; leaving early cancels it."""

    def cancel(self, request_id: str) -> None: ...
