"""Turning the domain's problems into one 400 envelope (all of them in the message, the first as `param`)."""
from __future__ import annotations

from aiohttp import web
from pydantic import BaseModel, ValidationError

from services.registry.domain.checks import Problem
from shared.contracts.errors import BadRequest
from shared.http.requests import bad_request_from


def raise_problems(problems: list[Problem]) -> None:
    if problems:
        first = problems[0]
        raise BadRequest("; ".join(p.message for p in problems), param=first.param, code=first.code)


def read_query(request: web.Request, model: type[BaseModel]):
    try:
        return model.model_validate(dict(request.query))
    except ValidationError as exc:
        raise bad_request_from(exc) from None
