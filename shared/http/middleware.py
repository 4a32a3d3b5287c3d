"""The kit's middlewares: request id + correlation, metrics, the one error middleware, and auth."""
from __future__ import annotations

import hmac
import re
import time
import uuid

import structlog
from aiohttp import web
from prometheus_client import Counter, Histogram

from shared.contracts.errors import ApiError, BadRequest, InternalError, NotFound, Unauthorized
from shared.http.keys import API_KEY_ID, ORG_ID, PLATFORM, REQUEST_ID
from shared.logging import correlation_id, get_logger

log = get_logger("http")
REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
HTTP_REQUESTS = Counter("loraserve_http_requests_total", "HTTP requests", ["method", "route", "status"])
HTTP_LATENCY = Histogram("loraserve_http_request_seconds", "HTTP request latency", ["method", "route"])
ANTHROPIC_PATHS = ("/v1/messages",)
PUBLIC_PREFIX = "/v1/"
INTERNAL_PREFIX = "/internal/"
CLIENT_CLOSED = 499


def wants_anthropic(request: web.Request) -> bool:
    return request.path.startswith(ANTHROPIC_PATHS)


def error_response(request: web.Request, error: ApiError) -> web.Response:
    body = error.anthropic() if wants_anthropic(request) else error.openai()
    return web.json_response(body, status=error.status, headers=error.headers)


@web.middleware
async def request_id_middleware(request: web.Request, handler):
    incoming = request.headers.get("x-request-id", "")
    rid = incoming if REQUEST_ID_RE.match(incoming) else f"req_{uuid.uuid4().hex}"
    request[REQUEST_ID] = rid
    token = correlation_id.set(rid)
    structlog.contextvars.bind_contextvars(correlation_id=rid)
    try:
        response = await handler(request)
        if not response.prepared:  # streamed responses get it from the app's on_response_prepare
            response.headers["x-request-id"] = rid
        return response
    finally:
        structlog.contextvars.unbind_contextvars("correlation_id")
        correlation_id.reset(token)


def _route_label(request: web.Request) -> str:
    route = request.match_info.route
    resource = getattr(route, "resource", None)
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def metrics_middleware(request: web.Request, handler):
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    finally:
        route = _route_label(request)
        HTTP_REQUESTS.labels(request.method, route, str(status)).inc()
        HTTP_LATENCY.labels(request.method, route).observe(time.perf_counter() - started)


@web.middleware
async def error_middleware(request: web.Request, handler):
    try:
        return await handler(request)
    except ApiError as error:
        return error_response(request, error)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        error = _from_http_exception(request, exc)
        return error_response(request, error)
    except web.RequestPayloadError as exc:
        # aiohttp's parser could not read the body (broken chunking, a content-encoding that does not decode)
        return error_response(request, BadRequest(f"The request body could not be read: {_payload_problem(exc)}",
                                                  code="invalid_body"))
    except Exception as exc:
        if isinstance(exc, ConnectionError) and _client_gone(request):
            # nobody is left to answer; nginx's 499 keeps the metrics from counting it as the server's fault
            log.info("client disconnected", path=request.path, method=request.method)
            return web.Response(status=CLIENT_CLOSED, reason="Client Closed Request")
        log.exception("unhandled error", path=request.path, method=request.method)
        return error_response(request, InternalError("The server had an error while processing your request."))


def _payload_problem(exc: web.RequestPayloadError) -> str:
    cause = exc.args[0] if exc.args else exc
    return str(getattr(cause, "message", cause)).strip()


def _client_gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


def _from_http_exception(request: web.Request, exc: web.HTTPException) -> ApiError:
    if exc.status == 404:
        return NotFound(f"Unknown path {request.path}", code="unknown_url")
    if exc.status == 405:
        return ApiError(f"Method {request.method} not allowed on {request.path}", status=405,
                        code="method_not_allowed", headers={"Allow": exc.headers.get("Allow", "")})
    if exc.status == 413:
        return ApiError("Request body too large", status=413, code="request_too_large")
    return ApiError(exc.reason or "Bad request", status=exc.status)


def api_key_from(request: web.Request) -> str | None:
    auth = request.headers.get("Authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip() or None
    return request.headers.get("x-api-key") or None


def service_token_ok(sent: str, expected: str) -> bool:
    """An empty expected token matches nothing: a blank setting closes /internal instead of opening it."""
    return bool(expected) and hmac.compare_digest(sent.encode(), expected.encode())


@web.middleware
async def auth_middleware(request: web.Request, handler):
    path = request.path
    if path.startswith(PUBLIC_PREFIX):
        key = api_key_from(request)
        if not key:
            raise Unauthorized("You didn't provide an API key. Pass it as 'Authorization: Bearer KEY' or 'x-api-key'.",
                               code="missing_api_key")
        identity = request.app[PLATFORM].identity
        org = await identity.org_for_key(key)
        if org is None:
            raise Unauthorized("Incorrect API key provided.", code="invalid_api_key")
        request[ORG_ID] = org
        key_id = await identity.key_id_for(key)
        if key_id:
            request[API_KEY_ID] = key_id
        structlog.contextvars.bind_contextvars(org_id=org)
        try:
            return await handler(request)
        finally:
            structlog.contextvars.unbind_contextvars("org_id")
    sent = request.headers.get("x-service-token", "")
    if path.startswith(INTERNAL_PREFIX) and not service_token_ok(sent, request.app[PLATFORM].settings.service_token):
        # internal routes do not exist for anyone without the token
        raise NotFound(f"Unknown path {path}", code="unknown_url")
    return await handler(request)
