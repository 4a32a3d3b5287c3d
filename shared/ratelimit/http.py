"""What a limiter's decision looks like on the wire: OpenAI's x-ratelimit-* headers, the 429 with retry-after and
retry-after-ms (which the openai and anthropic SDKs honour), and the 503 or fail-open of an outage. Shared by the
inference limits (services/inference_router/rate_limits.py) and the management limits (shared/http)."""
from __future__ import annotations

import math
from collections.abc import Sequence

from shared.contracts.errors import ApiError, ServiceUnavailable
from shared.logging import get_logger
from shared.ratelimit.limits import Decision, Limit, Limiter, LimiterUnavailable, LimitState

log = get_logger("ratelimit.http")
KINDS = ("requests", "tokens")


class RateLimited(ApiError):
    """OpenAI's 429: type names what ran out (requests or tokens), code rate_limit_exceeded."""

    status = 429

    def __init__(self, message: str, *, kind: str, headers: dict[str, str]):
        super().__init__(message, code="rate_limit_exceeded", headers=headers)
        self.type = kind


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
    """The limit/remaining/reset trio for each kind the decision counted, from its tightest limit."""
    headers: dict[str, str] = {}
    for kind in KINDS:
        state = tightest(decision.states, kind)
        if state is not None:
            headers[f"x-ratelimit-limit-{kind}"] = str(state.limit.limit)
            headers[f"x-ratelimit-remaining-{kind}"] = str(state.remaining)
            headers[f"x-ratelimit-reset-{kind}"] = duration(state.reset_seconds)
    return headers


def refusal(decision: Decision, headers: dict[str, str], what: str = "") -> RateLimited:
    """The 429 for a refused decision; `what` qualifies the limit in the message (e.g. "management API ")."""
    refused = decision.refused_by()
    first = refused[0]
    scope = "API key" if first.limit.key.startswith("key:") else "organization"
    wait = decision.retry_after()
    headers = {**headers, "retry-after": str(max(1, math.ceil(wait))), "retry-after-ms": str(max(1, round(wait * 1000)))}
    limit_name = f"{what}{first.limit.name}"
    if any(s.limit.cost > s.limit.limit for s in refused):
        headers["x-should-retry"] = "false"  # no window will ever hold it
        return RateLimited(f"Request too large for your {scope}'s {limit_name} limit: it needs "
                           f"{first.limit.cost} and a window allows {first.limit.limit}.", kind=first.limit.name,
                           headers=headers)
    return RateLimited(f"Rate limit reached for your {scope}: {limit_name} limit {first.limit.limit}, used "
                       f"{first.used}, requested {first.limit.cost}. Try again in {duration(wait)}.",
                       kind=first.limit.name, headers=headers)


async def decide(limiter: Limiter, limits: Sequence[Limit], window_seconds: float, *,
                 fail_open: bool) -> Decision | None:
    """The limiter's decision; when it cannot answer, None (fail open: admit uncounted) or a 503
    rate_limiter_unavailable with retry-after 1 (fail closed). Never a 500."""
    try:
        return await limiter.acquire(limits, window_seconds)
    except LimiterUnavailable as exc:
        log.warning("rate limiter unavailable", error=str(exc), fail_open=fail_open)
        if fail_open:
            return None
        raise ServiceUnavailable("Rate limits cannot be checked right now; retry shortly.",
                                 code="rate_limiter_unavailable", headers={"retry-after": "1"}) from None
