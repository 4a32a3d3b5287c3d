"""Concurrency limits per org, held as leases (`shared.ratelimit.leases`): open streams (`GET /v1/events` and
streamed completions, one pool for both services) and request bodies being received by file-ingest (one
upload each, and their Content-Lengths as bytes in flight).

A holder takes its lease before it commits to anything the caller sees (a stream's 200 headers, reading a
body), renews it while it runs and releases it when it ends, however it ends; a replica that dies holding
one frees its org within `lease_ttl_seconds`. Over a limit is a 429 naming the limit and its use with
`retry-after: 1`: a place frees when some stream or upload ends, a time nobody can tell the caller. A lease
store that cannot answer admits the request or refuses it with 503 `rate_limiter_unavailable`, per
`ratelimit_fail_open`, as the rate limiter does.
"""
from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiohttp import web

from shared.contracts.errors import ServiceUnavailable
from shared.http.keys import PLATFORM
from shared.logging import get_logger
from shared.quotas import Quotas
from shared.ratelimit.http import RateLimited
from shared.ratelimit.leases import Leases, Pool, renewed
from shared.ratelimit.limits import LimiterUnavailable

if TYPE_CHECKING:
    from shared.platform import Platform
    from shared.settings import Settings

log = get_logger("ratelimit.concurrency")
RETRY_AFTER = {"retry-after": "1", "retry-after-ms": "1000"}
# pool name -> the error's `type` (the name of the limit, as in the settings and `admin orgs set-limits`)
KINDS = {"streams": "concurrent_streams", "uploads": "concurrent_uploads", "upload_bytes": "upload_bytes_in_flight"}
MESSAGES = {
    "streams": "Too many concurrent streams for your organization: {used} of {limit} open. Retry when one ends.",
    "uploads": "Too many concurrent uploads for your organization: {used} of {limit} in progress. Retry when one "
               "finishes.",
    "upload_bytes": "Too many upload bytes in flight for your organization: {used} of {limit} bytes are being "
                    "received and this request adds {weight}. Retry when an upload finishes.",
}


def refusal(pool: Pool, used: int) -> RateLimited:
    """OpenAI's 429 (Anthropic's rate_limit_error on /v1/messages): type names the limit, code rate_limit_exceeded."""
    message = MESSAGES[pool.name].format(used=used, limit=pool.limit, weight=pool.weight)
    return RateLimited(message, kind=KINDS[pool.name], headers=dict(RETRY_AFTER))


def org_pool(name: str, org: str, limit: int | None, weight: int = 1) -> list[Pool]:
    """The org's pool, or none when the limit is off. A weight over the whole limit takes all of it: such a
    body is let through when nothing else of the org's is in flight, rather than never."""
    return [] if limit is None else [Pool(name, f"org:{org}:{name}", limit, min(weight, limit))]


@dataclass(frozen=True)
class Concurrency:
    settings: Settings
    leases: Leases
    quotas: Quotas

    @classmethod
    def of(cls, platform: Platform) -> Concurrency:
        return cls(platform.settings, platform.leases, Quotas(platform.settings, platform.identity))

    @classmethod
    def serving(cls, request: web.Request) -> Concurrency:
        """The limits of the process serving `request`: its Platform's leases, shared by all its services."""
        return cls.of(request.app[PLATFORM])

    @contextlib.asynccontextmanager
    async def stream(self, org: str) -> AsyncIterator[None]:
        """Hold one of the org's concurrent streams for the block, or raise RateLimited (429)."""
        limits = await self.quotas.limits(org)
        async with self.held(org_pool("streams", org, limits.concurrent_streams)):
            yield

    @contextlib.asynccontextmanager
    async def upload(self, org: str, body_bytes: int) -> AsyncIterator[None]:
        """Hold one of the org's concurrent uploads and `body_bytes` of its bytes in flight for the block."""
        limits = await self.quotas.limits(org)
        pools = [*org_pool("uploads", org, limits.concurrent_uploads),
                 *org_pool("upload_bytes", org, limits.upload_bytes_in_flight, body_bytes)]
        async with self.held(pools):
            yield

    @contextlib.asynccontextmanager
    async def held(self, pools: Sequence[Pool]) -> AsyncIterator[None]:
        lease_id = uuid.uuid4().hex
        if not pools or not await self._acquired(pools, lease_id):
            yield
            return
        async with renewed(self.leases, [p.key for p in pools], lease_id, self.settings.lease_ttl_seconds):
            yield

    async def _acquired(self, pools: Sequence[Pool], lease_id: str) -> bool:
        """True once the lease is held; False when the store is down and the settings say admit anyway."""
        try:
            decision = await self.leases.acquire(pools, lease_id, self.settings.lease_ttl_seconds)
        except LimiterUnavailable as exc:
            log.warning("lease store unavailable", error=str(exc), fail_open=self.settings.ratelimit_fail_open)
            if self.settings.ratelimit_fail_open:
                return False
            raise ServiceUnavailable("Concurrency limits cannot be checked right now; retry shortly.",
                                     code="rate_limiter_unavailable", headers={"retry-after": "1"}) from None
        if not decision.granted:
            raise refusal(*decision.refused()[0])
        return True
