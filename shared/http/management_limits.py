"""Requests per window per org on the management APIs: every authenticated public /v1 route that is not one of the
three inference POSTs (those have their own requests and tokens limits in the router). Files, uploads, LoRAs,
events, models, stored responses, usage: whichever service serves them, an org has one counter (`org:ORG:mgmt`),
so in `loraserve dev` the services in one process share it, and replicas share it through Redis.

The limit is the org's `management_requests_per_minute` (its override from `admin orgs set-limits`, else
LORASERVE_RATELIMIT_MANAGEMENT_REQUESTS_PER_MINUTE) per LORASERVE_RATELIMIT_WINDOW_SECONDS. Every counted response
carries OpenAI's x-ratelimit-*-requests trio; over the limit is a 429 in OpenAI's envelope with retry-after.
"""
from __future__ import annotations

from aiohttp import web

from shared.http.keys import ORG_ID, RESPONSE_HEADERS
from shared.http.middleware import PUBLIC_PREFIX
from shared.platform import Platform
from shared.quotas import Quotas
from shared.ratelimit import Limit, Limiter, limiter_for
from shared.ratelimit.http import decide, rate_headers, refusal
from shared.settings import Settings

# counted by the router's inference limits instead
INFERENCE_POSTS = frozenset({"/v1/chat/completions", "/v1/responses", "/v1/messages"})


def counter_key(org: str) -> str:
    return f"org:{org}:mgmt"


def is_management(request: web.Request) -> bool:
    """An authenticated public route this app serves, other than an inference POST. Unknown paths and methods
    (404/405) are not counted: they reach no handler."""
    if ORG_ID not in request or not request.path.startswith(PUBLIC_PREFIX):
        return False
    if request.match_info.http_exception is not None:
        return False
    return not (request.method == "POST" and request.path in INFERENCE_POSTS)


class ManagementLimits:
    def __init__(self, settings: Settings, limiter: Limiter, quotas: Quotas):
        self.settings, self.limiter, self.quotas = settings, limiter, quotas

    @classmethod
    def from_platform(cls, platform: Platform) -> ManagementLimits:
        settings = platform.settings
        return cls(settings, limiter_for(settings.redis_url, settings.redis_password),
                   Quotas(settings, platform.identity))

    async def admit(self, request: web.Request) -> None:
        """Count the request against its org, or raise the 429 (or the outage's 503 when failing closed)."""
        org = request[ORG_ID]
        per_window = (await self.quotas.limits(org)).management_requests_per_minute
        if per_window is None:
            return
        decision = await decide(self.limiter, [Limit("requests", counter_key(org), per_window, 1)],
                                self.settings.ratelimit_window_seconds, fail_open=self.settings.ratelimit_fail_open)
        if decision is None:
            return
        headers = rate_headers(decision)
        request[RESPONSE_HEADERS] = {**request.get(RESPONSE_HEADERS, {}), **headers}
        if not decision.allowed:
            raise refusal(decision, headers, what="management API ")

    async def close(self) -> None:
        await self.limiter.close()


MANAGEMENT_LIMITS = web.AppKey("management_limits", ManagementLimits)


@web.middleware
async def management_limits_middleware(request: web.Request, handler):
    limits = request.app.get(MANAGEMENT_LIMITS)
    if limits is not None and is_management(request):
        await limits.admit(request)
    return await handler(request)


def closing(limits: ManagementLimits):
    """The app's cleanup: the limiter (a Redis connection pool) closes with the app."""
    async def ctx(app: web.Application):
        yield
        await limits.close()
    return ctx


def install(app: web.Application, platform: Platform) -> None:
    """Limit `app`'s management routes; its middleware list must include management_limits_middleware."""
    limits = ManagementLimits.from_platform(platform)
    app[MANAGEMENT_LIMITS] = limits
    app.cleanup_ctx.append(closing(limits))
