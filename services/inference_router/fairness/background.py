"""Background jobs from their Response's creation to the queue: wait for the org's turn, then publish.

The POST answers `queued` as soon as the Response (with its job held in it) is stored. A task per job
waits for its places (scheduler.py), checks the Response still wants it (it may have been cancelled or
expired meanwhile) and publishes it. A bus that refuses the publish does not fail the Response: the job
stays held and is tried again, until its deadline. A maintenance loop renews this replica's claims and
takes over the jobs of replicas that stopped (held_jobs.py).
"""
from __future__ import annotations

import asyncio
import contextlib

from services.inference_router.fairness.held_jobs import RENEW_EVERY_SECONDS, HeldJobs, held_fields
from services.inference_router.fairness.scheduler import FairScheduler
from shared.bus.base import Bus, BusError
from shared.catalogue.catalogue import Catalogue
from shared.contracts.messages import GenerateResponse
from shared.logging import get_logger

log = get_logger("inference_router.background")
PUBLISH_RETRY_SECONDS = 2.0


class BackgroundDispatch:
    def __init__(self, scheduler: FairScheduler, held: HeldJobs, bus: Bus, source: str, catalogue: Catalogue):
        self.scheduler, self.held, self.bus, self.source, self.catalogue = scheduler, held, bus, source, catalogue
        self._tasks: dict[str, asyncio.Task] = {}

    def hold(self, doc: dict, job: GenerateResponse, *, cost: int, priority: int, correlation_id: str | None) -> dict:
        """The Response document to store, with its job held in it."""
        return {**doc, "held": held_fields(job, cost=cost, priority=priority, correlation_id=correlation_id,
                                           owner=self.held.owner)}

    def start(self, held_doc: dict) -> None:
        """Begin waiting for the turn of the job held in this stored document."""
        held = held_doc["held"]
        job = GenerateResponse.model_validate(held["job"])
        if job.response_id in self._tasks:
            return
        task = asyncio.get_running_loop().create_task(
            self._run(job, held["cost"], held["priority"], held.get("correlation_id")),
            name=f"background-{job.response_id}")
        self._tasks[job.response_id] = task
        task.add_done_callback(lambda _: self._tasks.pop(job.response_id, None))

    def forget(self, response_id: str) -> None:
        """The Response was cancelled here: stop waiting for its turn."""
        task = self._tasks.get(response_id)
        if task is not None:
            task.cancel()

    async def _run(self, job: GenerateResponse, cost: int, priority: int, correlation_id: str | None) -> None:
        if job.model not in self.catalogue.ids():
            return  # the model left the catalogue: the deadline sweep fails the Response
        model = self.catalogue.get(job.model)
        while True:
            grant = await self.scheduler.background_turn(model, job, cost)
            if grant is None or not await self.held.still_wanted(job.response_id):
                if grant is not None:
                    await self.scheduler.gate(model).release(grant)
                return  # its deadline passed (the sweep fails it), or it was cancelled or sent elsewhere
            try:
                await self.bus.publish(job, source=self.source, correlation_id=correlation_id, priority=priority)
            except BusError as exc:
                log.warning("could not publish a background job; it stays held", response_id=job.response_id,
                            error=str(exc))
                await self.scheduler.gate(model).release(grant)
                await asyncio.sleep(PUBLISH_RETRY_SECONDS)
                continue
            await self.held.published(job.response_id)
            return

    async def maintain_forever(self, every: float = RENEW_EVERY_SECONDS) -> None:
        while True:
            try:
                await self.maintain_once()
            except Exception:
                log.exception("held background jobs: renewal or takeover failed; trying again")
            await asyncio.sleep(every)

    async def maintain_once(self) -> int:
        """Renew this replica's claims; take over jobs whose holder stopped. Returns how many it took."""
        await self.held.renew(list(self._tasks))
        taken = await self.held.claim_lapsed()
        for doc in taken:
            self.start(doc)
        if taken:
            log.info("took over background jobs whose router stopped", count=len(taken))
        return len(taken)

    async def close(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
