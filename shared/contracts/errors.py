"""Errors a caller can cause, and the two wire envelopes they are rendered in.

Handlers raise `ApiError` subclasses; the kit's one error middleware renders them
as OpenAI `{"error": {message, type, param, code}}` or, on /v1/messages, as
Anthropic `{"type": "error", "error": {type, message}}`.
"""
from __future__ import annotations

from pydantic import BaseModel

ANTHROPIC_TYPES = {
    400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
    404: "not_found_error", 409: "invalid_request_error", 413: "request_too_large",
    415: "invalid_request_error", 422: "invalid_request_error", 429: "rate_limit_error",
    500: "api_error", 503: "overloaded_error", 504: "api_error",
}


class OpenAIErrorBody(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class OpenAIError(BaseModel):
    error: OpenAIErrorBody


class AnthropicErrorBody(BaseModel):
    type: str
    message: str


class AnthropicError(BaseModel):
    type: str = "error"
    error: AnthropicErrorBody


class ApiError(Exception):
    status = 400
    type = "invalid_request_error"

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None,
                 status: int | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code
        if status is not None:
            self.status = status
        self.headers = dict(headers or {})

    def openai(self) -> dict:
        return OpenAIError(error=OpenAIErrorBody(message=self.message, type=self.type,
                                                 param=self.param, code=self.code)).model_dump()

    def anthropic(self) -> dict:
        kind = ANTHROPIC_TYPES.get(self.status, "api_error" if self.status >= 500 else "invalid_request_error")
        return AnthropicError(error=AnthropicErrorBody(type=kind, message=self.message)).model_dump()


class BadRequest(ApiError):
    status = 400


class Unauthorized(ApiError):
    status = 401
    type = "authentication_error"


class NotFound(ApiError):
    status = 404
    type = "not_found_error"


class Conflict(ApiError):
    status = 409
    type = "conflict_error"

    def __init__(self, message: str, **kw):
        super().__init__(message, **kw)
        self.headers.setdefault("x-should-retry", "false")


class PayloadTooLarge(ApiError):
    status = 413
    type = "invalid_request_error"


class UnsupportedMediaType(ApiError):
    status = 415


class ServiceUnavailable(ApiError):
    status = 503
    type = "service_unavailable"


class GatewayTimeout(ApiError):
    status = 504
    type = "timeout"


class InternalError(ApiError):
    status = 500
    type = "server_error"
