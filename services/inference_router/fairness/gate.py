"""Fair scheduling across orgs, enforced before the shared queue.

RabbitMQ serves a model's queue first-in-first-out within a priority, and a worker takes only
`max_batch` jobs at a time, so once one org's flood is in the queue every other org waits behind
all of it. So the router publishes a job only when it holds a lease in two pools: its org's jobs
for the model (`inflight_jobs`, per-org overridable) and the model's jobs (`fair_model_inflight_jobs`).
A job that cannot get them waits here, in its org's queue; the queues are drained by deficit
round-robin over each job's estimated tokens (drr.py), so the next free place goes to the org whose
turn it is, not to whoever queued most. The pools are leases (shared/ratelimit/leases.py): in Redis
they hold across replicas, and a replica that crashed frees its places within the lease TTL.

A lease is released when its job ends: a sync or streamed call when it leaves (renewed while it runs),
a background job when its terminal status event is folded (by whichever replica folds it).
"""
from __future__ import annotations

import asyncio
import contextlib
import enum
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from services.inference_router.fairness.drr import DeficitRoundRobin
from services.inference_router.metrics import FAIR_WAIT_SECONDS, FAIR_WAITING
from shared.logging import get_logger
from shared.ratelimit import Leases, LimiterUnavailable, Pool

log = get_logger("inference_router.fairness")
POLL_SECONDS = 0.1  # releases by other replicas, and leases that expired, are seen this often


@dataclass(frozen=True)
class Grant:
    """A job's place in its pools: release these keys with the lease id when the job ends."""
    lease_id: str
    keys: tuple[str, ...]


@dataclass(eq=False)
class Waiter:
    lease_id: str  # the response id
    org_id: str
    cost: int  # estimated prompt tokens plus max_tokens
    ttl: float  # the lease's, once granted
    deadline: float  # wall-clock: a waiter past it is dropped
    granted: asyncio.Future = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    queued_at: float = field(default_factory=time.monotonic)


class Outcome(enum.Enum):
    GRANTED = "granted"
    ORG_FULL = "org_full"  # this org must wait; others may go
    MODEL_FULL = "model_full"  # nobody can go until a place frees


def pools_for(slug: str, org_id: str, org_cap: int | None, model_cap: int) -> list[Pool]:
    pools = [Pool("model_jobs", f"model:{slug}:jobs", model_cap)]
    if org_cap is not None:
        pools.append(Pool("org_jobs", f"org:{org_id}:jobs:{slug}", org_cap))
    return pools


def lease_keys(slug: str, org_id: str) -> tuple[str, ...]:
    return f"model:{slug}:jobs", f"org:{org_id}:jobs:{slug}"


class ModelGate:
    """One model's fair queue at this replica."""

    def __init__(self, model: str, slug: str, leases: Leases, *, org_cap: Callable[[str], Awaitable[int | None]],
                 model_cap: int, quantum: int, fail_open: bool):
        self.model, self.slug, self.leases = model, slug, leases
        self.org_cap, self.model_cap, self.fail_open = org_cap, model_cap, fail_open
        self.queue: DeficitRoundRobin[Waiter] = DeficitRoundRobin(quantum, cost=lambda w: w.cost)
        self._wake = asyncio.Event()
        self._drainer: asyncio.Task | None = None

    def waiting(self, org_id: str) -> int:
        return self.queue.waiting(org_id)

    async def wait_turn(self, waiter: Waiter) -> Grant:
        """Queue the job and wait until it holds its places; leaving (cancelled) takes it out of the queue."""
        self.queue.push(waiter.org_id, waiter)
        FAIR_WAITING.labels(self.model).inc()
        self.nudge()
        try:
            return await waiter.granted
        except BaseException:
            left_waiting = self.queue.discard(waiter.org_id, waiter)
            future = waiter.granted
            if not left_waiting and future.done() and not future.cancelled() and future.exception() is None:
                # granted in the same instant its caller left: give the places back
                await asyncio.shield(self.release(future.result()))
            raise
        finally:
            FAIR_WAITING.labels(self.model).dec()
            FAIR_WAIT_SECONDS.labels(self.model).observe(time.monotonic() - waiter.queued_at)

    def nudge(self) -> None:
        self._wake.set()
        if self._drainer is None or self._drainer.done():
            self._drainer = asyncio.create_task(self._drain_forever(), name=f"fair-drain-{self.slug}")

    async def release(self, grant: Grant) -> None:
        if grant.keys:
            try:
                await self.leases.release(grant.keys, grant.lease_id)
            except LimiterUnavailable as exc:
                log.warning("could not release a job's places; they expire by themselves", error=str(exc))
        self.nudge()

    async def close(self) -> None:
        if self._drainer is not None:
            self._drainer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._drainer

    async def _drain_forever(self) -> None:
        while len(self.queue):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), POLL_SECONDS)
            self._wake.clear()
            try:
                await self.drain_once()
            except Exception:
                log.exception("fair queue drain failed; trying again")

    async def drain_once(self) -> None:
        """Grant places in DRR order until the model is full or every waiting org is at its own cap."""
        orgs_full = short_of_credit = 0
        while (front := self.queue.front()) is not None:
            org_id, waiter = front
            if waiter.granted.done():  # its caller left; it takes itself out when it resumes
                self.queue.take()
                continue
            if waiter.deadline < time.time():
                self.queue.take()
                waiter.granted.set_exception(TimeoutError("the job's deadline passed while it waited"))
                continue
            if not self.queue.affordable():
                short_of_credit += 1
                if short_of_credit >= self.queue.orgs:
                    self.queue.fast_forward()
                    short_of_credit = 0
                self.queue.skip()
                continue
            short_of_credit = 0
            outcome, grant = await self._try(waiter)
            if self.queue.front() != (org_id, waiter) or waiter.granted.done():  # it left while we asked
                if grant is not None:
                    await self.release(grant)
                continue
            if outcome is Outcome.MODEL_FULL:
                return
            if outcome is Outcome.ORG_FULL:
                orgs_full += 1
                if orgs_full >= self.queue.orgs:
                    return
                self.queue.skip()
                continue
            self.queue.take()
            waiter.granted.set_result(grant)
            orgs_full = 0

    async def _try(self, waiter: Waiter) -> tuple[Outcome, Grant | None]:
        pools = pools_for(self.slug, waiter.org_id, await self.org_cap(waiter.org_id), self.model_cap)
        try:
            decision = await self.leases.acquire(pools, waiter.lease_id, waiter.ttl)
        except LimiterUnavailable as exc:
            log.warning("fair scheduling cannot reach its lease store", error=str(exc), fail_open=self.fail_open)
            if self.fail_open:
                return Outcome.GRANTED, Grant(waiter.lease_id, ())
            return Outcome.MODEL_FULL, None
        if decision.granted:
            return Outcome.GRANTED, Grant(waiter.lease_id, tuple(p.key for p in pools))
        refused = {pool.name for pool, _ in decision.refused()}
        return (Outcome.MODEL_FULL if "model_jobs" in refused else Outcome.ORG_FULL), None
