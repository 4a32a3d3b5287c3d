"""/v1/webhook_endpoints and /v1/webhook_event_types, as the official openai SDK calls them.

Every query is scoped by the caller's org (another org's endpoint is a 404). The signing secret is in the answer
only of create and rotate_secret; the stored document holds it sealed.
"""
from __future__ import annotations

import json
import secrets as random

from aiohttp import web
from pydantic import BaseModel, ValidationError

from services.webhooks import signing
from services.webhooks.context import Webhooks
from services.webhooks.egress import UrlRefused
from services.webhooks.event_types import EVENT_TYPES, sample_data, unknown_event_types
from services.webhooks.secrets import SecretUnreadable
from shared.contracts import webhooks as w
from shared.contracts.errors import BadRequest, Conflict, NotFound
from shared.http.requests import bad_request_from, json_response, org_id, read_model
from shared.quotas import check


def public(doc: dict) -> w.WebhookEndpoint:
    return w.WebhookEndpoint(id=doc["id"], name=doc["name"], url=doc["url"], event_types=doc["event_types"],
                             signing_secret_hint=doc["secret"]["hint"], status=doc["status"],
                             status_reason=doc.get("status_reason"), created_at=doc["created_at"],
                             updated_at=doc.get("updated_at"))


def with_secret(doc: dict, secret: str) -> w.WebhookEndpointWithSecret:
    return w.WebhookEndpointWithSecret(**public(doc).model_dump(), signing_secret=secret)


def check_event_types(event_types: list[str], param: str = "event_types") -> list[str]:
    unknown = unknown_event_types(event_types)
    if unknown:
        index = event_types.index(unknown[0])
        raise BadRequest(f"Unknown event type(s): {', '.join(map(repr, unknown))}. Known: "
                         f"{', '.join(EVENT_TYPES)} (GET /v1/webhook_event_types).",
                         param=f"{param}[{index}]", code="invalid_event_type")
    return list(dict.fromkeys(event_types))


def not_found(endpoint_id: str) -> NotFound:
    return NotFound(f"No webhook endpoint with id {endpoint_id!r} in your organization",
                    param="webhook_endpoint_id", code="not_found")


async def endpoint_of(ctx: Webhooks, request: web.Request) -> dict:
    endpoint_id = request.match_info["endpoint_id"]
    doc = await ctx.repository.get(org_id(request), endpoint_id)
    if doc is None:
        raise not_found(endpoint_id)
    return doc


async def create(ctx: Webhooks, request: web.Request) -> web.Response:
    org = org_id(request)
    body = await read_model(request, w.WebhookEndpointCreate)
    event_types = check_event_types(body.event_types)
    await ctx.egress.check_url(body.url)
    limits = await ctx.quotas.limits(org)
    check("webhook_endpoints", await ctx.repository.count(org), limits.webhook_endpoints)
    secret = signing.new_secret()
    doc = await ctx.repository.insert(org, body.name, body.url, event_types, secret)
    return json_response(with_secret(doc, secret))


async def retrieve(ctx: Webhooks, request: web.Request) -> web.Response:
    return json_response(public(await endpoint_of(ctx, request)))


def read_query(request: web.Request, model: type[BaseModel]):
    try:
        return model.model_validate(dict(request.query))
    except ValidationError as exc:
        raise bad_request_from(exc) from None


async def list_endpoints(ctx: Webhooks, request: web.Request) -> web.Response:
    org = org_id(request)
    params: w.WebhookEndpointListQuery = read_query(request, w.WebhookEndpointListQuery)
    cursor = None
    if params.after is not None:
        cursor = await ctx.repository.get(org, params.after)
        if cursor is None:
            raise BadRequest(f"after: no webhook endpoint with id {params.after!r} in your organization",
                             param="after", code="invalid_cursor")
    docs = await ctx.repository.page(org, cursor, params.limit + 1)
    data = [public(d) for d in docs[: params.limit]]
    return json_response(w.WebhookEndpointList(data=data, first_id=data[0].id if data else None,
                                               last_id=data[-1].id if data else None,
                                               has_more=len(docs) > params.limit))


async def update(ctx: Webhooks, request: web.Request) -> web.Response:
    doc = await endpoint_of(ctx, request)
    body = await read_model(request, w.WebhookEndpointUpdate)
    changes = body.model_dump(exclude_none=True)
    if body.event_types is not None:
        changes["event_types"] = check_event_types(body.event_types)
    if body.url is not None:
        await ctx.egress.check_url(body.url)
    updated = await ctx.repository.update(doc["org_id"], doc["id"], changes)
    if updated is None:  # deleted in between
        raise not_found(doc["id"])
    return json_response(public(updated))


async def delete(ctx: Webhooks, request: web.Request) -> web.Response:
    doc = await endpoint_of(ctx, request)
    if not await ctx.repository.delete(doc["org_id"], doc["id"]):
        raise not_found(doc["id"])
    return json_response(w.DeletedWebhookEndpoint(id=doc["id"]))


async def rotate_secret(ctx: Webhooks, request: web.Request) -> web.Response:
    doc = await endpoint_of(ctx, request)
    body = await read_model(request, w.WebhookRotateSecret)
    secret = signing.new_secret()
    rotated = await ctx.repository.rotate(doc["org_id"], doc["id"], secret,
                                          body.keep_old_secret_active_for_24_hours, ctx.now())
    if rotated is None:
        raise not_found(doc["id"])
    return json_response(with_secret(rotated, secret))


def test_event(event_type: str, now: float) -> tuple[str, bytes]:
    """A sample event of the type, as a real delivery's body: {id, object, type, created_at, data}."""
    event_id = "evt_test_" + random.token_hex(12)
    event = {"id": event_id, "object": "event", "type": event_type, "created_at": int(now),
             "data": sample_data(event_type)}
    return event_id, json.dumps(event, separators=(",", ":")).encode()


async def send_test(ctx: Webhooks, request: web.Request) -> web.Response:
    doc = await endpoint_of(ctx, request)
    body = await read_model(request, w.WebhookTest)
    event_type = check_event_types([body.event_type], param="event_type")[0]
    now = ctx.now()
    event_id, payload = test_event(event_type, now)
    try:
        secrets = ctx.repository.signing_secrets(doc, now)
    except SecretUnreadable:
        raise Conflict("This endpoint's signing secret cannot be read (the service's secrets key changed since it "
                       "was made): rotate_secret gives it a new one", code="secret_unreadable") from None
    headers = signing.headers(secrets, event_id, int(now), payload)
    sent = await ctx.egress.post(doc["url"], payload, headers)
    if sent.blocked:
        raise UrlRefused(sent.error or "refused")
    if sent.status is None:
        raise BadRequest(f"The test event did not reach {doc['url']}: {sent.error}", param="url",
                         code="webhook_unreachable")
    return json_response(w.WebhookEndpointTestResult(webhook_endpoint_id=doc["id"], event_type=event_type,
                                                     status_code=sent.status))


async def event_types(ctx: Webhooks, request: web.Request) -> web.Response:
    return json_response(w.WebhookEventTypeList(data=list(EVENT_TYPES), descriptions=dict(EVENT_TYPES)))
