"""The registry's part of an app: its routes, consumers, event fan-out, sweeper and file-ingest client."""
from __future__ import annotations

from functools import partial

import aiohttp
from aiohttp import web

from services.registry.consumers import consumers_ctx
from services.registry.context import Registry
from services.registry.event_log import EventLog
from services.registry.event_log_appender import event_log_ctx
from services.registry.handlers import events, internal, loras, org_limits
from services.registry.repository import LoraRepository
from services.registry.revalidation import revalidation_ctx
from services.registry.sweeper import sweeper_ctx
from shared.clients.files import FileIngestClient
from shared.platform import Platform, ServicePart
from shared.quotas import Quotas

DATABASE = "registry"
FILE_LOOKUP_TIMEOUT = aiohttp.ClientTimeout(total=15, sock_connect=5)
DEFAULT_HEARTBEAT_SECONDS = 15.0


def registry_from(platform: Platform) -> Registry:
    return Registry(repository=LoraRepository(platform.documents.database(DATABASE)), bus=platform.bus,
                    catalogue=platform.catalogue, source=platform.source,
                    validation_deadline_seconds=platform.settings.validation_deadline_seconds,
                    quotas=Quotas(platform.settings, platform.identity))


def routes(registry: Registry, heartbeat_seconds: float) -> list[web.AbstractRouteDef]:
    return [
        web.post("/v1/loras", partial(loras.create, registry)),
        web.get("/v1/loras", partial(loras.list_loras, registry)),
        web.get("/v1/loras/{ref}", partial(loras.retrieve, registry)),
        web.patch("/v1/loras/{ref}", partial(loras.update, registry)),
        web.delete("/v1/loras/{ref}", partial(loras.delete, registry)),
        web.get("/v1/events", partial(events.stream_events, registry, heartbeat_seconds)),
        web.get("/internal/v1/loras", partial(internal.list_all, registry)),
        web.get("/internal/v1/orgs/{org}/limits", partial(org_limits.get_limits, registry)),
        web.put("/internal/v1/orgs/{org}/limits", partial(org_limits.put_limits, registry)),
    ]


def indexes_ctx(registry: Registry):
    async def ctx(app):
        await registry.repository.ensure_indexes()
        yield
    return ctx


def files_client_ctx(registry: Registry, platform: Platform):
    async def ctx(app):
        async with aiohttp.ClientSession(timeout=FILE_LOOKUP_TIMEOUT) as session:
            registry.files = FileIngestClient(session, platform.internal_url("file-ingest"),
                                              platform.settings.service_token)
            yield
            registry.files = None
    return ctx


def end_streams(registry: Registry):
    async def on_shutdown(app):
        # open event streams would otherwise hold the server's graceful shutdown until its timeout
        if registry.hub is not None:
            registry.hub.close_all()
    return on_shutdown


def part_for(registry: Registry, platform: Platform, heartbeat_seconds: float = DEFAULT_HEARTBEAT_SECONDS
             ) -> ServicePart:
    event_log = EventLog(platform.documents.database(DATABASE), platform.settings.event_retention_seconds,
                         unique_event_ids=not platform.documents.embedded)
    return ServicePart(
        name="registry",
        routes=routes(registry, heartbeat_seconds),
        cleanup_ctx=[indexes_ctx(registry), files_client_ctx(registry, platform),
                     event_log_ctx(registry, event_log), consumers_ctx(registry), sweeper_ctx(registry),
                     revalidation_ctx(registry)],
        readiness=[registry.repository.ping],
        on_shutdown=[end_streams(registry)],
    )


def build(platform: Platform) -> ServicePart:
    heartbeat = float(platform.extras.get("sse_heartbeat_seconds", DEFAULT_HEARTBEAT_SECONDS))
    return part_for(registry_from(platform), platform, heartbeat)
