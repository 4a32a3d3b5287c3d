"""Requests and tokens per window on the inference APIs, per org and per API key.

A request is counted when admitted, its tokens as the prompt's lower-bound estimate (the one
`check_prompt_fits` uses); a sync or streamed request's count is corrected to the tokens the worker
reports (prompt plus completion) when it finishes. Background responses keep their estimate.
Every admitted or refused request carries OpenAI's x-ratelimit-* headers for its tightest limits.
"""
from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from services.inference_router.admission import Admitted
from services.inference_router.constraints import estimated_prompt_tokens
from services.inference_router.usage_meter import UsageMeter
from shared.contracts.messages import ChatMessage, ResponseFinished
from shared.http.keys import RESPONSE_HEADERS
from shared.http.requests import api_key_id, org_id
from shared.logging import get_logger
from shared.quotas import Quotas, default_limits
from shared.ratelimit import Limit, Limiter, LimiterUnavailable
from shared.ratelimit.http import RateLimited, decide, rate_headers, refusal
from shared.settings import Settings

log = get_logger("inference_router.rate_limits")
__all__ = ["RATE_GRANT", "RateGrant", "RateLimited", "RateLimits", "SettlingMeter"]


@dataclass(frozen=True)
class RateGrant:
    """What an admitted request counted against its token limits, to settle when it finishes."""

    token_keys: tuple[str, ...]
    estimated_tokens: int


RATE_GRANT = web.RequestKey("rate_grant", RateGrant)


class RateLimits:
    """`quotas`: the org's effective limits (`admin orgs set-limits` over the settings); without it (tests of the
    settings alone) every org has the settings' limits. Per-key limits are the settings' only."""

    def __init__(self, settings: Settings, limiter: Limiter, quotas: Quotas | None = None):
        self.settings, self.limiter, self.quotas = settings, limiter, quotas

    async def org_rates(self, org: str) -> tuple[int | None, int | None]:
        """The org's requests and tokens per window (None: no limit)."""
        limits = await self.quotas.limits(org) if self.quotas is not None else default_limits(self.settings)
        return limits.requests_per_minute, limits.tokens_per_minute

    async def limits_for(self, org: str, key_id: str | None, tokens: int) -> list[Limit]:
        s = self.settings
        wanted = [(f"org:{org}", *await self.org_rates(org))]
        if key_id:
            wanted.append((f"key:{key_id}", s.ratelimit_key_requests_per_minute, s.ratelimit_key_tokens_per_minute))
        limits = []
        for scope, requests, token_limit in wanted:
            if requests is not None:
                limits.append(Limit("requests", f"{scope}:requests", requests, 1))
            if token_limit is not None:
                limits.append(Limit("tokens", f"{scope}:tokens", token_limit, tokens))
        return limits

    async def admit(self, request: web.Request, admitted: Admitted, messages: list[ChatMessage]) -> None:
        """Count the request or raise RateLimited (429); its x-ratelimit-* headers go on its response."""
        tokens = estimated_prompt_tokens(admitted.model, [m.content for m in messages])
        limits = await self.limits_for(org_id(request), api_key_id(request), tokens)
        if not limits:
            return
        decision = await decide(self.limiter, limits, self.settings.ratelimit_window_seconds,
                                fail_open=self.settings.ratelimit_fail_open)
        if decision is None:
            return
        headers = rate_headers(decision)
        request[RESPONSE_HEADERS] = {**request.get(RESPONSE_HEADERS, {}), **headers}
        if not decision.allowed:
            raise refusal(decision, headers)
        request[RATE_GRANT] = RateGrant(tuple(lim.key for lim in limits if lim.name == "tokens"), tokens)

    async def settle(self, grant: RateGrant, used_tokens: int) -> None:
        """Correct the token counters to what the worker reported; a limiter outage only logs."""
        for key in grant.token_keys:
            try:
                await self.limiter.settle(key, used_tokens - grant.estimated_tokens)
            except LimiterUnavailable as exc:
                log.warning("could not settle tokens", key=key, error=str(exc))

    async def close(self) -> None:
        await self.limiter.close()


@dataclass(frozen=True)
class SettlingMeter:
    """A usage meter that also corrects the request's token counters once the worker reports its usage."""

    inner: UsageMeter
    limits: RateLimits
    grant: RateGrant

    async def finished(self, response_id: str, finished: ResponseFinished, latency_seconds: float) -> None:
        await self.inner.finished(response_id, finished, latency_seconds)
        await self.limits.settle(self.grant, finished.prompt_tokens + finished.completion_tokens)
