"""Reference counts from the registry's events: a LoRA holds its two files until it is deleted."""
from __future__ import annotations

from aiohttp import web
from pydantic import ValidationError

from services.file_ingest.context import FileIngest
from services.file_ingest.domain.refs import reference_from
from shared.bus.base import DeadLetter, Delivery
from shared.contracts.messages import LoraCreated, LoraDeleted
from shared.contracts.topology import FILE_REFS_QUEUE
from shared.logging import get_logger

log = get_logger("file_ingest.refs")
HANDLED = {LoraCreated.TYPE: LoraCreated, LoraDeleted.TYPE: LoraDeleted}


async def fold_lora_event(ctx: FileIngest, delivery: Delivery) -> None:
    """Apply one lora.created / lora.deleted; replays and reordering leave the same state."""
    kind = HANDLED.get(delivery.event.type)
    if kind is None:
        log.warning("lora_event_ignored", type=delivery.event.type)
        return
    try:
        message = kind.from_event(delivery.event)
    except ValidationError as exc:
        raise DeadLetter(f"malformed {delivery.event.type}: {exc}") from None
    reference = reference_from(message)
    if reference is None:
        log.warning("lora_event_without_id", type=delivery.event.type, event_id=delivery.event.id)
        return
    await ctx.refs.apply(reference)
    log.info("file_refs_updated", lora_id=reference.lora_id, files=list(reference.file_ids),
             released=reference.released)


def lora_refs_consumer(ctx: FileIngest):
    async def handler(delivery: Delivery) -> None:
        await fold_lora_event(ctx, delivery)

    async def consumer_ctx(app: web.Application):
        subscription = await ctx.bus.consume(FILE_REFS_QUEUE, handler)
        yield
        await subscription.close()

    return consumer_ctx
