"""The webhooks service's part of an app: the routing table and start-up (indexes)."""
from __future__ import annotations

from functools import partial

from aiohttp import web

from services.webhooks.context import Webhooks
from services.webhooks.delivery_repo import DeliveryRepository
from services.webhooks.fanout import deliveries_ctx
from services.webhooks.handlers import deliveries, endpoints
from shared.platform import Platform, ServicePart

NAME = "webhooks"


def routes(ctx: Webhooks) -> list[web.AbstractRouteDef]:
    return [
        web.post("/v1/webhook_endpoints", partial(endpoints.create, ctx)),
        web.get("/v1/webhook_endpoints", partial(endpoints.list_endpoints, ctx), allow_head=False),
        web.get("/v1/webhook_endpoints/{endpoint_id}", partial(endpoints.retrieve, ctx), allow_head=False),
        web.post("/v1/webhook_endpoints/{endpoint_id}", partial(endpoints.update, ctx)),
        web.delete("/v1/webhook_endpoints/{endpoint_id}", partial(endpoints.delete, ctx)),
        web.post("/v1/webhook_endpoints/{endpoint_id}/rotate_secret", partial(endpoints.rotate_secret, ctx)),
        web.post("/v1/webhook_endpoints/{endpoint_id}/test", partial(endpoints.send_test, ctx)),
        web.get("/v1/webhook_event_types", partial(endpoints.event_types, ctx), allow_head=False),
        web.get("/v1/webhook_endpoints/{endpoint_id}/deliveries",
                partial(deliveries.list_deliveries, ctx, DeliveryRepository(ctx.database)), allow_head=False),
    ]


def indexes_ctx(ctx: Webhooks):
    async def indexes(app: web.Application):
        await ctx.repository.ensure_indexes()
        yield
    return indexes


def part_for(ctx: Webhooks) -> ServicePart:
    return ServicePart(name=NAME, routes=routes(ctx), cleanup_ctx=[indexes_ctx(ctx), deliveries_ctx(ctx)],
                       readiness=[ctx.repository.ping])


def build(platform: Platform) -> ServicePart:
    platform.settings.require_safe(service_token=False, key_pepper=False, webhook_secrets_key=True)
    return part_for(Webhooks.from_platform(platform))
