"""GET /v1/organization/usage/completions: the caller's org's usage, in OpenAI's page-of-buckets shape.

Buckets start at `start_time` and are `bucket_width` long (the last one ends at `end_time`);
a page holds `limit` of them, empty ones included, and `next_page` is the start of the next.
"""
from __future__ import annotations

import time

from aiohttp import web
from pydantic import ValidationError

from services.inference_router.context import RouterContext
from shared.contracts.errors import BadRequest
from shared.contracts.usage import UsageBucket, UsageCompletionsResult, UsagePage, UsageQuery
from shared.http.requests import bad_request_from, json_response, org_id

ARRAY_PARAMS = ("group_by", "models", "api_key_ids", "lora_ids")
SCALAR_PARAMS = ("start_time", "end_time", "bucket_width", "limit", "page")
PAGE_PREFIX = "page_"
MAX_QUERY_VALUES = 64


def _array(request: web.Request, name: str) -> list[str] | None:
    """Repeated (`name=a&name=b`), bracketed as the OpenAI SDKs send it (`name[]=a`), or `name=a,b`."""
    raw = request.query.getall(name, []) + request.query.getall(name + "[]", [])
    if not raw:
        return None
    values = [part.strip() for value in raw for part in value.split(",")]
    if len(values) > MAX_QUERY_VALUES:
        raise BadRequest(f"At most {MAX_QUERY_VALUES} values of {name}", param=name, code="invalid_request")
    return values


def _check_names(request: web.Request) -> None:
    """A misspelt or unsupported parameter (OpenAI's project_ids, say) is an error, not a silently wider report."""
    known = {*SCALAR_PARAMS, *ARRAY_PARAMS, *(name + "[]" for name in ARRAY_PARAMS)}
    unknown = sorted(set(request.query) - known)
    if unknown:
        raise BadRequest(f"Unknown query parameter '{unknown[0][:64]}'; this endpoint takes "
                         f"{', '.join((*SCALAR_PARAMS, *ARRAY_PARAMS))}", param=unknown[0][:64],
                         code="invalid_request")


def parse_query(request: web.Request) -> UsageQuery:
    _check_names(request)
    fields: dict[str, object] = {}
    for name in SCALAR_PARAMS:
        values = request.query.getall(name, [])
        if len(values) > 1:
            raise BadRequest(f"{name} was given {len(values)} times", param=name, code="invalid_request")
        if values:
            fields[name] = values[0]
    for name in ARRAY_PARAMS:
        values = _array(request, name)
        if values is not None:
            fields[name] = values
    try:
        return UsageQuery.model_validate(fields)
    except ValidationError as exc:
        raise bad_request_from(exc) from None
    except ValueError as exc:  # an integer past the interpreter's digit limit
        raise BadRequest(f"Invalid request: {exc}", code="invalid_request") from None


def page_start(query: UsageQuery, end: int) -> int:
    """Where this page's first bucket starts: start_time, or the cursor of the previous page."""
    if query.page is None:
        return query.start_time
    digits = query.page.removeprefix(PAGE_PREFIX)
    start = int(digits) if query.page.startswith(PAGE_PREFIX) and digits.isdigit() and len(digits) < 16 else -1
    if start < query.start_time or start >= end or (start - query.start_time) % query.bucket_seconds:
        raise BadRequest("page is not a next_page cursor of this query", param="page", code="invalid_page")
    return start


def _result(row) -> UsageCompletionsResult:
    return UsageCompletionsResult(input_tokens=row.input_tokens, output_tokens=row.output_tokens,
                                  num_model_requests=row.requests, model=row.model, api_key_id=row.api_key_id,
                                  lora_id=row.lora_id)


def _order(row) -> tuple:
    return tuple((value is not None, value or "") for value in (row.model, row.api_key_id, row.lora_id))


async def usage_page(router: RouterContext, org: str, query: UsageQuery, now: int) -> UsagePage:
    # without end_time: up to and including this second, so what just finished is in the report
    end = query.end_time if query.end_time is not None else max(now + 1, query.start_time + 1)
    start = page_start(query, end)
    width = query.bucket_seconds
    count = min(query.page_size, -(-(end - start) // width))
    starts = [start + i * width for i in range(count)]
    page_end = min(end, starts[-1] + width)
    sums = await router.usage.sums(org, query, start, page_end)
    buckets = []
    for bucket_start in starts:
        rows = sorted((s for s in sums if s.bucket_start == bucket_start), key=_order)
        buckets.append(UsageBucket(start_time=bucket_start, end_time=min(end, bucket_start + width),
                                   results=[_result(row) for row in rows]))
    has_more = page_end < end
    return UsagePage(data=buckets, has_more=has_more, next_page=f"{PAGE_PREFIX}{page_end}" if has_more else None)


async def completions_usage(router: RouterContext, request: web.Request) -> web.Response:
    query = parse_query(request)
    return json_response(await usage_page(router, org_id(request), query, int(time.time())))
