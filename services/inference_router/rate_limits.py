"""Requests and tokens per window on the inference APIs, per org and per API key.

A request is counted when admitted, its tokens as the prompt's lower-bound estimate (the one
`check_prompt_fits` uses); a sync or streamed request's count is corrected to the tokens the worker
reports (prompt plus completion) when it finishes. Background responses keep their estimate.
Every admitted or refused request carries OpenAI's x-ratelimit-* headers for its tightest limits.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from aiohttp import web

from services.inference_router.admission import Admitted
from services.inference_router.constraints import estimated_prompt_tokens
from services.inference_router.usage_meter import UsageMeter
from shared.contracts.errors import ApiError, ServiceUnavailable
from shared.contracts.messages import ChatMessage, ResponseFinished
from shared.http.keys import RESPONSE_HEADERS
from shared.http.requests import api_key_id, org_id
from shared.logging import get_logger
from shared.ratelimit import Decision, Limit, Limiter, LimiterUnavailable, LimitState
from shared.settings import Settings

log = get_logger("inference_router.rate_limits")
KINDS = ("requests", "tokens")


class RateLimited(ApiError):
    """OpenAI's 429: type names what ran out (requests or tokens), code rate_limit_exceeded."""

    status = 429

    def __init__(self, message: str, *, kind: str, headers: dict[str, str]):
        super().__init__(message, code="rate_limit_exceeded", headers=headers)
        self.type = kind


@dataclass(frozen=True)
class RateGrant:
    """What an admitted request counted against its token limits, to settle when it finishes."""

    token_keys: tuple[str, ...]
    estimated_tokens: int


RATE_GRANT = web.RequestKey("rate_grant", RateGrant)


def duration(seconds: float) -> str:
    """OpenAI's reset format: 20ms, 1.5s, 6m0s."""
    if seconds < 1:
        return f"{max(0, round(seconds * 1000))}ms"
    minutes, rest = divmod(round(seconds, 3), 60)
    return f"{int(minutes)}m{rest:g}s" if minutes else f"{rest:g}s"


def tightest(states: tuple[LimitState, ...], kind: str) -> LimitState | None:
    mine = [s for s in states if s.limit.name == kind]
    return min(mine, key=lambda s: (s.remaining, -s.reset_seconds), default=None)


def rate_headers(decision: Decision) -> dict[str, str]:
    headers: dict[str, str] = {}
    for kind in KINDS:
        state = tightest(decision.states, kind)
        if state is not None:
            headers[f"x-ratelimit-limit-{kind}"] = str(state.limit.limit)
            headers[f"x-ratelimit-remaining-{kind}"] = str(state.remaining)
            headers[f"x-ratelimit-reset-{kind}"] = duration(state.reset_seconds)
    return headers


def refusal(decision: Decision, headers: dict[str, str]) -> RateLimited:
    refused = decision.refused_by()
    first = refused[0]
    scope = "API key" if first.limit.key.startswith("key:") else "organization"
    wait = decision.retry_after()
    headers = {**headers, "retry-after": str(max(1, math.ceil(wait))), "retry-after-ms": str(max(1, round(wait * 1000)))}
    if any(s.limit.cost > s.limit.limit for s in refused):
        headers["x-should-retry"] = "false"  # no window will ever hold it
        return RateLimited(f"Request too large for your {scope}'s {first.limit.name} limit: it needs "
                           f"{first.limit.cost} and a window allows {first.limit.limit}.", kind=first.limit.name,
                           headers=headers)
    return RateLimited(f"Rate limit reached for your {scope}: {first.limit.name} limit {first.limit.limit}, used "
                       f"{first.used}, requested {first.limit.cost}. Try again in {duration(wait)}.",
                       kind=first.limit.name, headers=headers)


class RateLimits:
    def __init__(self, settings: Settings, limiter: Limiter):
        self.settings, self.limiter = settings, limiter

    def limits_for(self, org: str, key_id: str | None, tokens: int) -> list[Limit]:
        s = self.settings
        wanted = [(f"org:{org}", s.ratelimit_requests_per_minute, s.ratelimit_tokens_per_minute)]
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
        limits = self.limits_for(org_id(request), api_key_id(request), tokens)
        if not limits:
            return
        try:
            decision = await self.limiter.acquire(limits, self.settings.ratelimit_window_seconds)
        except LimiterUnavailable as exc:
            log.warning("rate limiter unavailable", error=str(exc), fail_open=self.settings.ratelimit_fail_open)
            if self.settings.ratelimit_fail_open:
                return
            raise ServiceUnavailable("Rate limits cannot be checked right now; retry shortly.",
                                     code="rate_limiter_unavailable", headers={"retry-after": "1"}) from None
        headers = rate_headers(decision)
        request[RESPONSE_HEADERS] = headers
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
