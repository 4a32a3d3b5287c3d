"""Reading what a caller sent: JSON bodies into pydantic models, with size caps and 400s that name the param."""
from __future__ import annotations

import json
from typing import TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from shared.contracts.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType
from shared.http.keys import API_KEY_ID, ORG_ID, REQUEST_ID

T = TypeVar("T", bound=BaseModel)
DEFAULT_MAX_JSON = 4 * 1024 * 1024
# no request body of the API nests anywhere near this; deeper ones would reach the interpreter's recursion limit
# in the parser, the validators or the JSON written to the bus
MAX_JSON_DEPTH = 64


def org_id(request: web.Request) -> str:
    return request[ORG_ID]


def api_key_id(request: web.Request) -> str | None:
    """The id of the API key the caller authenticated with (None where the identity store has no ids)."""
    return request.get(API_KEY_ID)


def request_id(request: web.Request) -> str:
    """The caller's x-request-id (or the one the kit made): the correlation id of what the request causes."""
    return request.get(REQUEST_ID, "")


# pydantic puts the member type of a union into `loc` (`input.str`, `input.list[...]`): not a param
_UNION_TAGS = {"str", "int", "float", "bool", "list", "dict", "none", "literal"}


def _is_field(part) -> bool:
    text = str(part)
    return text != "__root__" and "[" not in text and text.lower() not in _UNION_TAGS


def param_of(error: dict) -> str | None:
    parts = [str(p) for p in error.get("loc", ()) if _is_field(p)]
    if not parts:
        return None
    out = parts[0]
    for part in parts[1:]:
        out += f"[{part}]" if part.isdigit() else f".{part}"
    return out


def bad_request_from(exc: ValidationError) -> BadRequest:
    """Every problem at once in the message; the first one's location as `param`."""
    errors = exc.errors(include_url=False)
    messages = []
    for error in errors:
        where = param_of(error)
        messages.append(f"{where}: {error['msg']}" if where else error["msg"])
    return BadRequest("Invalid request: " + "; ".join(messages), param=param_of(errors[0]) if errors else None,
                      code="invalid_request")


async def read_json_object(request: web.Request, max_bytes: int = DEFAULT_MAX_JSON) -> dict:
    if request.content_length is not None and request.content_length > max_bytes:
        raise PayloadTooLarge(f"Request body exceeds {max_bytes} bytes")
    ctype = request.content_type
    if ctype not in ("application/json", "", "application/octet-stream") and not ctype.endswith("+json"):
        raise UnsupportedMediaType(f"Expected application/json, got {ctype}")
    body = bytearray()
    async for chunk in request.content.iter_chunked(64 * 1024):
        body += chunk
        if len(body) > max_bytes:
            raise PayloadTooLarge(f"Request body exceeds {max_bytes} bytes")
    value = parse_json(bytes(body))
    if not isinstance(value, dict):
        raise BadRequest("Request body must be a JSON object", code="invalid_json")
    return value


def parse_json(body: bytes):
    """The JSON value, or a 400 for anything a client can send: bad UTF-8 or syntax, numbers past the
    interpreter's 4300-digit limit, nesting deeper than MAX_JSON_DEPTH."""
    too_deep = BadRequest(f"Request body nests deeper than {MAX_JSON_DEPTH} levels", code="invalid_json")
    try:
        value = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError:
        raise BadRequest("Request body is not valid UTF-8", code="invalid_json") from None
    except json.JSONDecodeError as exc:
        raise BadRequest(f"Request body is not valid JSON: {exc.msg} at position {exc.pos}",
                         code="invalid_json") from None
    except RecursionError:
        raise too_deep from None
    except ValueError:  # "Exceeds the limit (4300 digits) for integer string conversion"
        raise BadRequest("Request body has a number with too many digits", code="invalid_json") from None
    brackets = body.count(b"[") + body.count(b"{")  # at C speed: most bodies cannot nest that deep at all
    if brackets > MAX_JSON_DEPTH and nesting_exceeds(value, MAX_JSON_DEPTH):
        raise too_deep
    return value


def nesting_exceeds(value, limit: int) -> bool:
    """Whether arrays/objects nest more than `limit` deep (iterative: deep input must not recurse here either)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        for child in children:
            if isinstance(child, dict | list):
                if depth + 1 > limit:
                    return True
                stack.append((child, depth + 1))
    return False


async def read_model(request: web.Request, model: type[T], max_bytes: int = DEFAULT_MAX_JSON) -> T:
    payload = await read_json_object(request, max_bytes)
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        raise bad_request_from(exc) from None


def json_response(payload, status: int = 200, headers: dict | None = None) -> web.Response:
    if isinstance(payload, BaseModel):
        payload = payload.model_dump(mode="json")
    return web.json_response(payload, status=status, headers=headers)
