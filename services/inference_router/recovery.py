"""Ending background Responses whose job died with the embedded platform.

With the in-process bus a background job lives in memory only: after a crash its Response
would stay `queued` or `in_progress` until its completion window's deadline (up to a day),
and nothing would ever run it. The stored document does not hold the whole job (sampling
parameters such as `seed` or `stop` are not stored), so it cannot be sent again exactly;
at start-up, before serving, such a Response ends `failed` with `server_restarted`, which
tells the client to create it again. A job that was still waiting for its org's turn is kept whole in its
Response (`held`) and is taken over and run instead (fairness/background.py). RabbitMQ keeps jobs durably, so production does not do this.
"""
from __future__ import annotations

from services.inference_router.response_docs import ACTIVE
from services.inference_router.response_repo import ResponseRepository
from shared.logging import get_logger

log = get_logger("inference_router.recovery")
RESTARTED = {"code": "server_restarted",
             "message": "The platform restarted before this background response finished, and its job was lost. "
                        "Create the response again."}


async def fail_interrupted(responses: ResponseRepository) -> int:
    """Fail every background Response still queued or in progress; returns how many."""
    # a job still held (waiting for its org's turn) was never published: a router takes it over instead
    cursor = responses.responses.find({"background": True, "status": {"$in": sorted(ACTIVE)},
                                       "held": {"$exists": False}},
                                      {"_id": 0, "id": 1, "org_id": 1})
    interrupted = [doc async for doc in cursor]
    for doc in interrupted:
        await responses.fail(doc["org_id"], doc["id"], dict(RESTARTED))
    if interrupted:
        log.info("background responses interrupted by a restart failed", count=len(interrupted))
    return len(interrupted)
