"""Requests aiohttp's HTTP parser refuses, answered in the API's error envelope.

A request line or header over aiohttp's limits (8,190 bytes), too many headers, or a malformed message is refused
by the parser before any middleware runs, and aiohttp answered it in text/plain. `install()` makes every server of
the process answer in the envelope instead: Anthropic's when the path was read and is /v1/messages, else OpenAI's
(nothing of the request was processed; the connection is closed, as aiohttp does). Installed by the CLI before a
server starts, never at import.
"""
from __future__ import annotations

from aiohttp import web, web_protocol, web_server

from shared.contracts.errors import ApiError, BadRequest, InternalError
from shared.http.middleware import error_response


class EnvelopeRequestHandler(web_protocol.RequestHandler):
    def handle_error(self, request, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        super().handle_error(request, status, exc, message)  # logs it; raises if a response had started
        response = error_response(request, _error(status, exc))
        response.force_close()
        return response


def _error(status: int, exc: BaseException | None) -> ApiError:
    if status >= 500:
        return InternalError("The server could not handle the request.", code="internal_error", status=status)
    what = type(exc).__name__ if exc is not None else "BadHttpMessage"
    return BadRequest(f"The HTTP request could not be read ({what}): a request line or header may be over 8,190 "
                      "bytes, or there may be too many headers. Nothing was processed.",
                      code="bad_http_request", status=status)


def install() -> None:
    web_server.RequestHandler = EnvelopeRequestHandler  # what web.Server instantiates per connection
