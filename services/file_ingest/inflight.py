"""What a request that sends file bytes holds while file-ingest receives them: one of its org's concurrent
uploads and its Content-Length of the org's upload bytes in flight (`shared.ratelimit.concurrency`)."""
from __future__ import annotations

from contextlib import AbstractAsyncContextManager

from aiohttp import web

from services.file_ingest.streaming import FORM_OVERHEAD_BYTES
from shared.http.requests import org_id
from shared.ratelimit.concurrency import Concurrency


def receiving(request: web.Request, max_file_bytes: int) -> AbstractAsyncContextManager[None]:
    """Taken before the body is read, released when the request ends. A body sent without Content-Length
    (chunked) counts the most the route accepts: its size is only known once it has been received."""
    declared = request.content_length
    body_bytes = declared if declared is not None else max_file_bytes + FORM_OVERHEAD_BYTES
    return Concurrency.serving(request).upload(org_id(request), body_bytes)
