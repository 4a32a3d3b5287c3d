"""Sends due webhook deliveries from the database: nothing lives only in memory, so a restart loses nothing.

Each attempt claims one delivery (see delivery_repo), signs the stored body under the delivery's fixed
`webhook-id` with a fresh timestamp and every secret the endpoint signs with now (a rotated-out one too, in its
grace period), and posts it through the egress guard. A 2xx delivers it; anything else (timeout, connection
error, non-2xx, an SSRF-blocked address) is retried after an exponential backoff with full jitter until
`retry_seconds` after the first attempt, then the delivery fails. An endpoint whose attempts have failed without
a success for `disable_after_seconds` is disabled and its pending deliveries end. The fanout wakes the loop
with the deliveries it stored (claimed for this process, so attempted without a claim round trip);
otherwise the loop polls for retries that are due and claims that lapsed.
"""
from __future__ import annotations

import asyncio
import collections
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from services.webhooks import signing
from services.webhooks.delivery_repo import DELIVERED, FAILED, DeliveryRepository
from services.webhooks.egress import Egress, SendResult
from services.webhooks.repository import DISABLED, EndpointRepository
from shared.logging import get_logger
from shared.settings import Settings

log = get_logger("webhooks.delivery_worker")
CLAIM_MARGIN_SECONDS = 30.0  # a claim outlives the longest attempt by this much
EXPIRY_INTERVAL_SECONDS = 3600.0  # how often ended deliveries past the retention are dropped (at most)


@dataclass(frozen=True)
class RetryPolicy:
    base_seconds: float
    cap_seconds: float
    window_seconds: float  # retried until this long after the first attempt

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryPolicy:
        return cls(settings.webhook_retry_base_seconds, settings.webhook_retry_cap_seconds,
                   settings.webhook_retry_seconds)

    def delay(self, failed_attempts: int) -> float:
        """Full jitter: uniform in [0, min(cap, base·2^(n-1))], so many failing receivers never retry in step."""
        ceiling = min(self.cap_seconds, self.base_seconds * 2 ** min(failed_attempts - 1, 62))
        return random.uniform(0.0, ceiling)


@dataclass
class WorkerConfig:
    retry: RetryPolicy
    disable_after_seconds: float
    concurrency: int
    poll_seconds: float
    claim_seconds: float
    retention_seconds: float = 30 * 24 * 3600.0  # how long the log keeps deliveries that ended

    @classmethod
    def from_settings(cls, settings: Settings) -> WorkerConfig:
        return cls(RetryPolicy.from_settings(settings), settings.webhook_disable_after_seconds,
                   settings.webhook_delivery_concurrency, settings.webhook_poll_seconds,
                   settings.webhook_timeout_seconds + CLAIM_MARGIN_SECONDS,
                   settings.webhook_delivery_retention_seconds)


class DeliveryWorker:
    def __init__(self, deliveries: DeliveryRepository, endpoints: EndpointRepository, egress: Egress,
                 config: WorkerConfig, clock: Callable[[], float] = time.time):
        self.deliveries, self.endpoints, self.egress = deliveries, endpoints, egress
        self.config, self.clock = config, clock
        self._wake = asyncio.Event()
        self._running: dict[asyncio.Task, str] = {}  # attempt -> its claim token
        self._loop: asyncio.Task | None = None
        self._handed: collections.deque[dict] = collections.deque()
        self._stopping = False
        self._next_expiry = 0.0

    def hand_over(self, claimed: list[dict]) -> None:
        """Deliveries the fanout stored, claimed for this process: attempted next, without a database claim."""
        self._handed.extend(claimed)
        self._wake.set()

    def start(self) -> None:
        self._stopping = False
        self._loop = asyncio.get_running_loop().create_task(self.run())

    async def run(self) -> None:
        while not self._stopping:
            self._wake.clear()  # before claiming: a wake during the claims is not lost
            try:
                await self._start_due()
                await self._expire_log()
            except Exception:  # a database hiccup must not end deliveries; the next poll retries
                log.exception("webhooks.claim_failed")
            try:
                await asyncio.wait_for(self._wake.wait(), self.config.poll_seconds)
            except TimeoutError:
                pass

    async def _start_due(self) -> None:
        while not self._stopping and len(self._running) < self.config.concurrency:
            claimed = self._next_handed() or await self.deliveries.claim_due(self.clock(), self.config.claim_seconds)
            if claimed is None:
                return
            task = asyncio.get_running_loop().create_task(self._attempt_logged(claimed))
            self._running[task] = claimed["claim"]
            task.add_done_callback(self._finished)

    async def _expire_log(self) -> None:
        now = self.clock()
        if now < self._next_expiry:
            return
        self._next_expiry = now + min(EXPIRY_INTERVAL_SECONDS, self.config.retention_seconds)
        expired = await self.deliveries.expire(now - self.config.retention_seconds)
        if expired:
            log.info("webhooks.deliveries_expired", deleted=expired)

    def _next_handed(self) -> dict | None:
        """The next delivery handed over whose claim still has the time an attempt needs (a later one is left
        to lapse: any worker takes it from the database then)."""
        while self._handed:
            claimed = self._handed.popleft()
            if claimed["claimed_until"] - self.clock() > self.config.claim_seconds - CLAIM_MARGIN_SECONDS:
                return claimed
        return None

    def _finished(self, task: asyncio.Task) -> None:
        self._running.pop(task, None)
        self._wake.set()  # a slot is free

    async def stop(self) -> None:
        """End the loop between two claims (a claim cancelled half-way would be held until its lease
        lapses), cancel attempts in flight and give their claims back (their receivers may get them twice:
        at least once, de-duplicated on webhook-id)."""
        self._stopping = True
        self._wake.set()
        if self._loop is not None:
            await asyncio.gather(self._loop, return_exceptions=True)
        claims = [*self._running.values(), *(claimed["claim"] for claimed in self._handed)]
        self._handed.clear()
        for task in list(self._running):
            task.cancel()
        await asyncio.gather(*self._running, return_exceptions=True)
        await self.deliveries.release(claims)

    async def _attempt_logged(self, claimed: dict) -> None:
        try:
            await self.attempt(claimed)
        except Exception:  # the claim lapses and the delivery is tried again
            log.exception("webhooks.attempt_failed", delivery=claimed["id"])

    async def attempt(self, claimed: dict) -> None:
        endpoint = await self.endpoints.get(claimed["org_id"], claimed["endpoint_id"])
        if endpoint is None or endpoint.get("status") == DISABLED:
            await self.deliveries.end(claimed, "endpoint_deleted" if endpoint is None else "endpoint_disabled")
            return
        now = self.clock()
        body = claimed["body"].encode()
        headers = signing.headers(self.endpoints.signing_secrets(endpoint, now), claimed["webhook_id"],
                                  int(now), body)
        result = await self.egress.post(endpoint["url"], body, headers)
        await self._record(claimed, endpoint, result, now)

    async def _record(self, claimed: dict, endpoint: dict, result: SendResult, started: float) -> None:
        now = self.clock()
        attempt = {"attempted_at": started, "status_code": result.status, "error": result.error,
                   "latency_ms": round(result.latency_ms, 3), "blocked": result.blocked}
        first = claimed["first_attempt_at"] or started
        if result.status is not None and 200 <= result.status < 300:
            changes = {"status": DELIVERED, "delivered_at": now, "next_attempt_at": None}
        elif now - first >= self.config.retry.window_seconds:
            changes = {"status": FAILED, "failure_reason": "retries_exhausted", "next_attempt_at": None}
        else:
            retry_at = min(now + self.config.retry.delay(claimed["attempt_count"] + 1),
                           first + self.config.retry.window_seconds)
            changes = {"next_attempt_at": retry_at}
        if not await self.deliveries.record_attempt(claimed, attempt, {**changes, "first_attempt_at": first}):
            return  # the claim lapsed; whoever holds it now records its own attempt
        if changes.get("status") == DELIVERED:
            await self.deliveries.clear_failing(endpoint["id"])
        else:
            await self._note_failure(endpoint, now)

    async def _note_failure(self, endpoint: dict, now: float) -> None:
        since = await self.deliveries.failing_since(endpoint["id"], now)
        if now - since < self.config.disable_after_seconds:
            return
        reason = f"deliveries failed for {int(now - since)} seconds without a success"
        await self.endpoints.set_status(endpoint["org_id"], endpoint["id"], DISABLED, reason)
        ended = await self.deliveries.fail_pending(endpoint["id"], "endpoint_disabled")
        await self.deliveries.clear_failing(endpoint["id"])  # a re-enabled endpoint starts with a clean record
        log.warning("webhooks.endpoint_disabled", endpoint=endpoint["id"], org=endpoint["org_id"],
                    failing_seconds=int(now - since), pending_ended=ended)
