"""GET /internal/v1/loras: every org's LoRAs (service token only), so a fresh router can fill its read model.

`last_id` is an opaque cursor (creation time and id), so a LoRA deleted between two
pages does not break the listing.
"""
from __future__ import annotations

import re

from aiohttp import web
from pydantic import BaseModel, Field

from services.registry.context import Registry
from services.registry.domain.lora import LoraDocument
from services.registry.handlers.problems import read_query
from shared.contracts.errors import BadRequest
from shared.contracts.loras import InternalLoraEntry, InternalLoraPage
from shared.http.requests import json_response

CURSOR = re.compile(r"^(\d{1,20})_([0-9a-f-]{36})$")


class InternalListParams(BaseModel):
    after: str | None = None
    limit: int = Field(100, ge=1, le=1000)


def cursor_of(document: LoraDocument) -> str:
    return f"{document.created_ns}_{document.id}"


def parse_cursor(value: str) -> tuple[int, str]:
    match = CURSOR.match(value)
    if match is None:
        raise BadRequest(f"after: {value!r} is not a cursor this listing returned", param="after",
                         code="invalid_cursor")
    return int(match.group(1)), match.group(2)


async def list_all(registry: Registry, request: web.Request) -> web.Response:
    params: InternalListParams = read_query(request, InternalListParams)
    after = parse_cursor(params.after) if params.after is not None else None
    documents = await registry.repository.page(None, after=after, limit=params.limit + 1, descending=False)
    shown = documents[: params.limit]
    entries = [InternalLoraEntry(org_id=d.org_id, lora=d.public(), adapter=d.adapter, version=d.version)
               for d in shown]
    page = InternalLoraPage(data=entries, has_more=len(documents) > params.limit,
                            last_id=cursor_of(shown[-1]) if shown else None)
    return json_response(page)
