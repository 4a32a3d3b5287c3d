"""Background jobs that were dead-lettered end their Response `failed`.

A background job is retried from scratch when its worker dies, up to the inference queue's
delivery limit; past it (the job took its worker down every time) or when a worker refused it,
the bus moves it to the model's inference dead-letter queue. Nothing would ever run it again,
so the stored Response, still `queued` or `in_progress`, is failed here instead of waiting
forever. Sync and streamed jobs are skipped: their callers already got an answer or an error.
"""
from __future__ import annotations

from pydantic import ValidationError

from services.inference_router.context import RouterContext
from shared.bus.base import Delivery
from shared.contracts import topology
from shared.contracts.messages import GenerateResponse
from shared.logging import get_logger

log = get_logger("inference_router.dead_letters")
DEAD_LETTERED_CODE = "job_dead_lettered"


def dead_letter_queues(slugs: list[str]) -> list[str]:
    """The dead-letter queue of every model's inference queue."""
    declared = topology.topology(slugs)
    return [declared.queue(topology.inference_queue(slug)).dlq_name for slug in slugs]


def explain(delivery: Delivery) -> str:
    death = delivery.death
    if death is None:
        return "The job could not be run and was set aside. Create the response again."
    if death.reason == "delivery_limit":
        return (f"The job was delivered {death.count} times without finishing (its model worker stopped or "
                "failed each time) and was set aside. Create the response again; if it keeps failing, "
                "shorten or change the request.")
    return f"A model worker refused the job ({death.reason}: {death.error or 'no detail'})."


def dead_letter_handler(router: RouterContext):
    async def handle(delivery: Delivery) -> None:
        if delivery.event.type != GenerateResponse.TYPE:
            log.warning("ignoring a dead letter that is no inference job", type=delivery.event.type)
            return
        try:
            job = GenerateResponse.from_event(delivery.event)
        except (ValidationError, ValueError):
            log.warning("ignoring a malformed dead-lettered job", event_id=delivery.event.id)
            return
        if not job.background:
            return
        await router.responses.fail(job.org_id, job.response_id,
                                    {"code": DEAD_LETTERED_CODE, "message": explain(delivery)})
        if job.model in router.platform.catalogue.ids():  # its places in the fair scheduler's pools
            await router.fair.release(router.platform.catalogue.get(job.model), job.org_id, job.response_id)
        log.info("dead-lettered background response failed", response_id=job.response_id,
                 reason=delivery.death.reason if delivery.death else None)
    return handle
