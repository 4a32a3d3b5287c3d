"""The inference router's part of an app: its routes, the LoRA read model, the Response fold and sweeper."""
from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
from collections.abc import Callable
from functools import partial

import aiohttp
from aiohttp import web

from services.inference_router import chat_completions, messages, models, responses, usage
from services.inference_router.console import console_routes
from services.inference_router.context import RouterContext
from services.inference_router.dead_letters import dead_letter_handler, dead_letter_queues
from services.inference_router.fairness.background import BackgroundDispatch
from services.inference_router.fairness.held_jobs import HeldJobs
from services.inference_router.fairness.scheduler import FairScheduler
from services.inference_router.lora_sync import (
    LORA_EVENT_BINDING,
    FetchListing,
    LoraDirectory,
    registry_listing,
)
from services.inference_router.outcomes import keep_publishing
from services.inference_router.rate_limits import RateLimits
from services.inference_router.response_events import status_handler, sweep_forever
from services.inference_router.response_repo import ResponseRepository
from services.inference_router.usage_repo import UsageRepository
from shared.clients.registry import RegistryClient
from shared.contracts import topology
from shared.platform import Platform, ServicePart
from shared.quotas import Quotas
from shared.ratelimit import limiter_for

NAME = "inference-router"
DATABASE = "inference_router"
REGISTRY_TIMEOUT = aiohttp.ClientTimeout(total=30, sock_connect=5)
RESPONSE_EVENTS_PREFETCH = 16
ListingFactory = Callable[[aiohttp.ClientSession], FetchListing]


def routes(router: RouterContext) -> list[web.AbstractRouteDef]:
    return [
        web.post("/v1/chat/completions", partial(chat_completions.create_chat_completion, router)),
        web.post("/v1/responses", partial(responses.create_response, router)),
        web.get("/v1/responses/{response_id}", partial(responses.get_response, router), allow_head=False),
        web.post("/v1/responses/{response_id}/cancel", partial(responses.cancel_response, router)),
        web.post("/v1/messages", partial(messages.create_message, router)),
        web.get("/v1/models", models.list_models, allow_head=False),
        web.get("/v1/models/{model_id:.+}", models.get_model, allow_head=False),
        web.get("/v1/organization/usage/completions", partial(usage.completions_usage, router), allow_head=False),
        *console_routes(),  # the web console's static files (public; it calls /v1 with the user's key)
    ]


async def _stop(task: asyncio.Task) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def registry_listing_from(platform: Platform) -> ListingFactory:
    def factory(session: aiohttp.ClientSession) -> FetchListing:
        return registry_listing(RegistryClient(session, platform.internal_url("registry"),
                                               platform.settings.service_token))
    return factory


def lora_model_ctx(router: RouterContext, listing: ListingFactory):
    """Subscribe to lora.* events first, then load the listing in the background (with backoff)."""
    async def ctx(app: web.Application):
        platform = router.platform
        async with aiohttp.ClientSession(timeout=REGISTRY_TIMEOUT) as session:
            router.loras.fetch_listing = listing(session)
            subscription = await platform.bus.subscribe(topology.EVENTS, [LORA_EVENT_BINDING],
                                                        router.loras.on_event)
            loader = asyncio.get_running_loop().create_task(router.loras.load_with_backoff())
            yield
            await _stop(loader)
            await subscription.close()
    return ctx


def responses_ctx(router: RouterContext):
    async def ctx(app: web.Application):
        await router.responses.ensure_indexes()
        await router.usage.ensure_indexes()
        await router.background.held.ensure_indexes()
        bus = router.platform.bus
        consumers = [await bus.consume(topology.ROUTER_RESPONSES_QUEUE, status_handler(router),
                                       prefetch=RESPONSE_EVENTS_PREFETCH)]
        # background jobs set aside by the bus end their Response failed (dead_letters.py)
        for queue in dead_letter_queues(router.platform.catalogue.slugs()):
            consumers.append(await bus.consume(queue, dead_letter_handler(router)))
        sweeper = asyncio.get_running_loop().create_task(sweep_forever(router))
        held_jobs = asyncio.get_running_loop().create_task(router.background.maintain_forever())
        # background Responses' outcome events a crash or a bus outage left unpublished (outcomes.py)
        outcomes = asyncio.get_running_loop().create_task(keep_publishing(router.responses.outbox))
        yield
        await _stop(outcomes)
        await _stop(held_jobs)
        await _stop(sweeper)
        await router.background.close()
        await router.fair.close()
        await router.limits.close()
        for consumer in consumers:
            await consumer.close()
    return ctx


async def _unavailable_listing() -> list:
    raise RuntimeError("the registry client is not started yet")


def router_from(platform: Platform) -> RouterContext:
    database = platform.documents.database(DATABASE)
    fair = FairScheduler(platform.settings, platform.leases, Quotas(platform.settings, platform.identity),
                         platform.catalogue)
    held = HeldJobs(database["responses"], owner=f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}")
    return RouterContext(platform=platform, loras=LoraDirectory(_unavailable_listing),
                         responses=ResponseRepository(database, platform.bus, platform.source),
                         usage=UsageRepository(database),
                         limits=RateLimits(platform.settings, limiter_for(platform.settings.redis_url,
                                                                           platform.settings.redis_password),
                                           Quotas(platform.settings, platform.identity)),
                         fair=fair, background=BackgroundDispatch(fair, held, platform.bus, platform.source,
                                                                  platform.catalogue))


def part_for(router: RouterContext, listing: ListingFactory) -> ServicePart:
    async def lora_model_loaded() -> bool:
        return router.loras.model.loaded

    return ServicePart(name=NAME, routes=routes(router),
                       cleanup_ctx=[responses_ctx(router), lora_model_ctx(router, listing)],
                       readiness=[lora_model_loaded])


def build(platform: Platform) -> ServicePart:
    return part_for(router_from(platform), registry_listing_from(platform))
