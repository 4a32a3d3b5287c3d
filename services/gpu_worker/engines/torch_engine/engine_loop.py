"""Drives the engine from asyncio: steps run on one dedicated thread while the event loop stays free.

`generate` yields a request's updates until its final one; leaving early (the job's task was
cancelled) cancels the request in the engine.
"""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor

from services.gpu_worker.engines.base import WorkerStopping
from services.gpu_worker.engines.torch_engine.engine import Engine
from services.gpu_worker.engines.torch_engine.sequence import GenerationRequest, RequestUpdate
from services.gpu_worker.errors import INTERNAL
from shared.logging import get_logger

log = get_logger("gpu_worker.engine_loop")
_STOPPED = object()
DRAIN_POLL_SECONDS = 0.05


class EngineLoop:
    def __init__(self, engine: Engine):
        self.engine = engine
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="engine")
        self._streams: dict[str, asyncio.Queue[RequestUpdate]] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None

    async def run_on_engine_thread(self, function, *args):
        """Run torch work that must not race the engine's steps (e.g. a warm-up)."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, function, *args)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="engine-loop")

    async def stop(self, drain_seconds: float = 30.0) -> None:
        """Let running requests finish for up to `drain_seconds`; the rest raise `WorkerStopping`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + drain_seconds
        while self._streams and self.running and loop.time() < deadline:
            await asyncio.sleep(DRAIN_POLL_SECONDS)  # the engine's thread signals nothing we could await
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        for stream in self._streams.values():
            stream.put_nowait(_STOPPED)
        self._executor.shutdown(wait=True)
        self.engine.close()

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def generate(self, request: GenerationRequest) -> AsyncIterator[RequestUpdate]:
        if request.request_id in self._streams:
            raise ValueError(f"request {request.request_id} is already running")
        updates: asyncio.Queue[RequestUpdate] = asyncio.Queue()
        self._streams[request.request_id] = updates
        self.engine.submit(request)
        self._wake.set()
        finished = False
        try:
            while not finished:
                update = await updates.get()
                if update is _STOPPED:
                    raise WorkerStopping(request.request_id)
                finished = update.finished
                yield update
        finally:
            self._streams.pop(request.request_id, None)
            if not finished:
                self.cancel(request.request_id)

    def cancel(self, request_id: str) -> None:
        self.engine.cancel(request_id)
        self._wake.set()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._wake.clear()
            if not self.engine.has_work():
                await self._wake.wait()
                continue
            try:
                updates = await loop.run_in_executor(self._executor, self.engine.step)
            except Exception as exc:
                log.exception("engine_step_failed")
                updates = await loop.run_in_executor(self._executor, self.engine.abort_all, INTERNAL, str(exc))
                updates += self._orphans(updates, str(exc))
            for update in updates:
                stream = self._streams.get(update.request_id)
                if stream is not None:
                    stream.put_nowait(update)

    def _orphans(self, updates: list[RequestUpdate], message: str) -> list[RequestUpdate]:
        """Requests the failed step held between queues: they get their final update too."""
        told = {u.request_id for u in updates}
        return [RequestUpdate(rid, finished=True, error_code=INTERNAL, error_message=message)
                for rid in self._streams if rid not in told]
