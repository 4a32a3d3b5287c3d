"""GET /v1/webhook_endpoints/{id}/deliveries: an endpoint's delivery log, newest first, cursor-paginated.

Scoped by org through the endpoint: another org's endpoint id is a 404 like everything else.
"""
from __future__ import annotations

import json

from aiohttp import web

from services.webhooks.context import Webhooks
from services.webhooks.delivery_repo import DeliveryRepository
from services.webhooks.handlers.endpoints import endpoint_of, read_query
from shared.contracts import webhook_deliveries as wd
from shared.contracts.errors import BadRequest
from shared.http.requests import json_response


def _seconds(value: float | None) -> int | None:
    return None if value is None else int(value)


def public(doc: dict) -> wd.WebhookDelivery:
    attempts = [wd.WebhookDeliveryAttempt(attempted_at=int(a["attempted_at"]), status_code=a.get("status_code"),
                                          error=a.get("error"), latency_ms=a.get("latency_ms", 0.0),
                                          blocked=a.get("blocked", False))
                for a in doc.get("attempts", [])]
    return wd.WebhookDelivery(
        id=doc["id"], webhook_endpoint_id=doc["endpoint_id"], event_id=doc["event_id"],
        event_type=doc["event_type"], webhook_id=doc["webhook_id"], status=doc["status"],
        failure_reason=doc.get("failure_reason"), created_at=int(doc["created_at"]),
        delivered_at=_seconds(doc.get("delivered_at")),
        next_attempt_at=_seconds(doc.get("next_attempt_at")) if doc["status"] == "pending" else None,
        attempt_count=doc.get("attempt_count", len(attempts)), attempts=attempts, event=json.loads(doc["body"]))


async def list_deliveries(ctx: Webhooks, deliveries: DeliveryRepository, request: web.Request) -> web.Response:
    endpoint = await endpoint_of(ctx, request)
    params: wd.WebhookDeliveryListQuery = read_query(request, wd.WebhookDeliveryListQuery)
    cursor = None
    if params.after is not None:
        cursor = await deliveries.get(endpoint["org_id"], endpoint["id"], params.after)
        if cursor is None:
            raise BadRequest(f"after: no delivery with id {params.after!r} to this endpoint", param="after",
                             code="invalid_cursor")
    found = await deliveries.page(endpoint["org_id"], endpoint["id"], cursor, params.limit + 1)
    data = [public(doc) for doc in found[: params.limit]]
    return json_response(wd.WebhookDeliveryList(data=data, first_id=data[0].id if data else None,
                                                 last_id=data[-1].id if data else None,
                                                 has_more=len(found) > params.limit))
