"""/internal/v1/files/{id}?org_id=ORG: what the registry needs to know of a file (service token required)."""
from __future__ import annotations

from aiohttp import web

from services.file_ingest.context import FileIngest
from shared.contracts.errors import BadRequest, NotFound
from shared.http.requests import json_response


class InternalHandlers:
    def __init__(self, ctx: FileIngest):
        self.ctx = ctx

    async def lookup(self, request: web.Request) -> web.Response:
        org = request.query.get("org_id", "")
        if not org:
            raise BadRequest("org_id is required", param="org_id")
        file_id = request.match_info["file_id"]
        record = await self.ctx.files.get(org, file_id)
        if record is None:
            raise NotFound(f"No such File object: {file_id}", param="id", code="file_not_found")
        return json_response(record.internal())
