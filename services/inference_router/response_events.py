"""Background work on stored Responses: folding the workers' status events, and expiring missed deadlines."""
from __future__ import annotations

import asyncio
import time

from services.inference_router.context import RouterContext
from services.inference_router.rate_limits import RateGrant
from services.inference_router.response_docs import TERMINAL
from services.inference_router.usage_meter import ends_with_usage, record_folded
from shared.bus.base import Delivery
from shared.contracts.messages import ResponseStatusChanged
from shared.logging import get_logger

log = get_logger("inference_router.response_events")
SWEEP_INTERVAL_SECONDS = 30.0


def status_handler(router: RouterContext):
    """Handler for ROUTER_RESPONSES_QUEUE: acked once the fold is stored (raising requeues it)."""
    async def handle(delivery: Delivery) -> None:
        if delivery.event.type != ResponseStatusChanged.TYPE:
            return
        event = ResponseStatusChanged.from_event(delivery.event)
        changed = await router.responses.apply(event)
        if ends_with_usage(event):
            doc = await router.responses.get(event.org_id, event.response_id)
            await record_folded(router.usage, doc)
            if changed:  # this event ended it: a redelivered one must not settle the tokens twice
                await settle_tokens(router, doc)
        if event.status in TERMINAL:
            await release_places(router, event)
        log.debug("response event folded", response_id=event.response_id, status=event.status, changed=changed)
    return handle


async def settle_tokens(router: RouterContext, doc: dict | None) -> None:
    """Correct a background response's token counters from its estimate to what the worker reported."""
    grant, usage = (doc or {}).get("rate_grant"), (doc or {}).get("usage")
    if grant and usage:
        await router.limits.settle(RateGrant(tuple(grant["token_keys"]), grant["estimated_tokens"]),
                                   usage["input_tokens"] + usage["output_tokens"])


async def release_places(router: RouterContext, event: ResponseStatusChanged) -> None:
    """A background job ended: its places in the fair scheduler's pools go to the next waiting job."""
    doc = await router.responses.get(event.org_id, event.response_id)
    if doc is not None and doc["model"] in router.platform.catalogue.ids():
        await router.fair.release(router.platform.catalogue.get(doc["model"]), event.org_id, event.response_id)


async def expire_once(router: RouterContext, now: float | None = None) -> int:
    """Fail background responses still queued past their deadline, and tell the workers to skip them."""
    expired = await router.responses.expire_overdue(time.time() if now is None else now)
    for doc in expired:
        await router.cancel_stored(doc)
    if expired:
        log.info("expired background responses past their deadline", count=len(expired))
    return len(expired)


async def sweep_forever(router: RouterContext, interval: float = SWEEP_INTERVAL_SECONDS) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            await expire_once(router)
        except Exception:
            log.exception("deadline sweep failed; trying again next round")
