"""Concurrency limits as leases: what holds a stream, an upload or a queued job open counts against a pool.

A pool is a key with a limit; a lease is an id with a weight (1 for a stream, the Content-Length for bytes
in flight) and an expiry. `acquire` takes a lease in every pool it is given or in none. Leases expire
`ttl` seconds after their last renewal, so a replica that crashed while holding them frees its org within a
TTL: holders renew while they run (`held()` does it for them) and release when they end. Re-acquiring an id
already held replaces its weight and expiry, so a retried acquire never counts twice.
"""
from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from shared.logging import get_logger
from shared.ratelimit.limits import LimiterUnavailable

log = get_logger("ratelimit.leases")


@dataclass(frozen=True)
class Pool:
    name: str  # what it counts: "streams", "uploads", "upload_bytes", "org_jobs", "model_jobs"
    key: str  # whose: e.g. "org:org_1:streams"
    limit: int
    weight: int = 1  # what this lease takes of it


@dataclass(frozen=True)
class LeaseDecision:
    granted: bool
    used: tuple[int, ...]  # per pool, by the other leases (this one not included)
    pools: tuple[Pool, ...]

    def refused(self) -> list[tuple[Pool, int]]:
        """The pools this lease did not fit, with what the others hold of each."""
        if self.granted:
            return []
        return [(pool, used) for pool, used in zip(self.pools, self.used, strict=True)
                if used + pool.weight > pool.limit]


class Leases(Protocol):
    async def acquire(self, pools: Sequence[Pool], lease_id: str, ttl: float) -> LeaseDecision:
        """Take the lease in every pool, or in none. Raises LimiterUnavailable."""

    async def renew(self, keys: Sequence[str], lease_id: str, ttl: float) -> int:
        """Push the lease's expiry `ttl` seconds out in each pool still holding it; returns how many do."""

    async def release(self, keys: Sequence[str], lease_id: str) -> None: ...

    async def close(self) -> None: ...


class InProcessLeases:
    """Leases in this process's memory (the embedded default). One event loop, no awaits inside: no lock."""

    def __init__(self, clock=time.monotonic):
        self._clock = clock
        self._pools: dict[str, dict[str, tuple[int, float]]] = {}  # key -> lease id -> (weight, expires_at)

    def _live(self, key: str, now: float) -> dict[str, tuple[int, float]]:
        leases = {lid: held for lid, held in self._pools.get(key, {}).items() if held[1] > now}
        if leases:
            self._pools[key] = leases
        else:
            self._pools.pop(key, None)
        return leases

    async def acquire(self, pools: Sequence[Pool], lease_id: str, ttl: float) -> LeaseDecision:
        now = self._clock()
        used = tuple(sum(w for lid, (w, _) in self._live(p.key, now).items() if lid != lease_id) for p in pools)
        granted = all(u + p.weight <= p.limit for p, u in zip(pools, used, strict=True))
        if granted:
            for pool in pools:
                self._pools.setdefault(pool.key, {})[lease_id] = (pool.weight, now + ttl)
        return LeaseDecision(granted=granted, used=used, pools=tuple(pools))

    async def renew(self, keys: Sequence[str], lease_id: str, ttl: float) -> int:
        now, renewed = self._clock(), 0
        for key in keys:
            held = self._live(key, now).get(lease_id)
            if held is not None:
                self._pools[key][lease_id] = (held[0], now + ttl)
                renewed += 1
        return renewed

    async def release(self, keys: Sequence[str], lease_id: str) -> None:
        for key in keys:
            leases = self._pools.get(key)
            if leases is not None:
                leases.pop(lease_id, None)
                if not leases:
                    del self._pools[key]

    async def close(self) -> None:
        self._pools.clear()


@contextlib.asynccontextmanager
async def renewed(leases: Leases, keys: Sequence[str], lease_id: str, ttl: float) -> AsyncIterator[None]:
    """While the block runs, renew the (already granted) lease every third of its TTL; release it after."""

    async def renew_forever() -> None:
        while True:
            await asyncio.sleep(ttl / 3)
            try:
                if not await leases.renew(keys, lease_id, ttl):
                    log.warning("a lease expired while held", lease_id=lease_id)
            except LimiterUnavailable as exc:  # an outage must not end what the lease guards; it expires at worst
                log.warning("could not renew a lease", lease_id=lease_id, error=str(exc))

    renewer = asyncio.create_task(renew_forever())
    try:
        yield
    finally:
        renewer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await renewer
        try:
            await asyncio.shield(leases.release(keys, lease_id))
        except LimiterUnavailable as exc:
            log.warning("could not release a lease; it expires by itself", lease_id=lease_id, error=str(exc))
