"""The router's fair scheduler: one gate per model, the places a sync call holds while it runs, and the
release of a background job's places when its end is folded."""
from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

from services.inference_router.fairness.gate import Grant, ModelGate, Waiter, lease_keys
from shared.catalogue.catalogue import Catalogue, ModelEntry
from shared.contracts.errors import ServiceUnavailable
from shared.contracts.messages import GenerateResponse
from shared.quotas import Quotas
from shared.ratelimit import Leases, renewed
from shared.ratelimit.http import RateLimited
from shared.settings import Settings

# a background job's places are released when its end is folded; the TTL only covers a lost event
BACKGROUND_LEASE_GRACE_SECONDS = 900.0


def job_cost(job: GenerateResponse, prompt_tokens: int) -> int:
    return max(1, prompt_tokens + job.sampling.max_tokens)


class FairScheduler:
    def __init__(self, settings: Settings, leases: Leases, quotas: Quotas, catalogue: Catalogue):
        self.settings, self.leases, self.quotas, self.catalogue = settings, leases, quotas, catalogue
        self._gates: dict[str, ModelGate] = {}

    @property
    def enabled(self) -> bool:
        return self.settings.fair_scheduling

    def gate(self, model: ModelEntry) -> ModelGate:
        gate = self._gates.get(model.slug)
        if gate is None:
            s = self.settings
            gate = self._gates[model.slug] = ModelGate(
                model.id, model.slug, self.leases, org_cap=self._org_cap, model_cap=s.fair_model_inflight_jobs,
                quantum=s.fair_quantum_tokens, fail_open=s.ratelimit_fail_open)
        return gate

    async def _org_cap(self, org_id: str) -> int | None:
        return (await self.quotas.limits(org_id)).inflight_jobs

    def check_room(self, model: ModelEntry, org_id: str) -> None:
        """An org may keep fair_org_queue jobs waiting at one replica; past that, 429 (retry later)."""
        waiting = self.gate(model).waiting(org_id)
        if waiting >= self.settings.fair_org_queue:
            raise RateLimited(f"Too many requests waiting for your organization on model '{model.id}': {waiting} "
                              "are queued behind your requests in flight. Try again later.", kind="requests",
                              headers={"retry-after": "1", "retry-after-ms": "1000"})

    @contextlib.asynccontextmanager
    async def turn(self, model: ModelEntry, job: GenerateResponse, cost: int, wait: float) -> AsyncIterator[None]:
        """A sync or streamed job's places: wait up to `wait` seconds for them, hold them while it runs."""
        if not self.enabled:
            yield
            return
        gate = self.gate(model)
        ttl = self.settings.lease_ttl_seconds
        waiter = Waiter(job.response_id, job.org_id, cost, ttl=ttl, deadline=time.time() + wait)
        try:
            grant = await asyncio.wait_for(gate.wait_turn(waiter), wait)
        except TimeoutError:
            raise ServiceUnavailable(
                f"This request waited {wait:g} seconds behind your organization's other requests for '{model.id}' "
                f"(at most {await self._org_cap(job.org_id)} run at once). Retry later, or send it with "
                "background=true.", code="org_queue_timeout", headers={"retry-after": "1"}) from None
        try:
            async with renewed(self.leases, grant.keys, grant.lease_id, ttl):
                yield
        finally:
            gate.nudge()

    async def background_turn(self, model: ModelEntry, job: GenerateResponse, cost: int) -> Grant | None:
        """Wait for a background job's places; None when its deadline passed first."""
        deadline = job.deadline.timestamp() if job.deadline else time.time() + 86400
        if not self.enabled:
            return Grant(job.response_id, ())
        ttl = max(1.0, deadline - time.time()) + BACKGROUND_LEASE_GRACE_SECONDS
        try:
            return await self.gate(model).wait_turn(Waiter(job.response_id, job.org_id, cost, ttl=ttl,
                                                           deadline=deadline))
        except TimeoutError:
            return None

    async def release(self, model: ModelEntry, org_id: str, response_id: str) -> None:
        """A job ended: free its places (a no-op when it held none)."""
        if self.enabled:
            await self.gate(model).release(Grant(response_id, lease_keys(model.slug, org_id)))

    async def close(self) -> None:
        for gate in self._gates.values():
            await gate.close()
