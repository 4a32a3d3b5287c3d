"""GET/PUT /internal/v1/orgs/{org}/limits: an org's quota overrides (service token only, like all /internal).

Stored with the identity store every HTTP service shares, so a change applies to the registry's and
file-ingest's checks alike. PUT replaces the overrides: a field left out or null follows the default.
"""
from __future__ import annotations

from aiohttp import web

from services.registry.context import Registry
from shared.contracts.errors import BadRequest
from shared.http.requests import json_response, read_model
from shared.identity.keys import valid_org_id
from shared.logging import get_logger
from shared.quotas import OrgLimits

log = get_logger("registry.org_limits")


def _org(request: web.Request) -> str:
    org = request.match_info["org"]
    if not valid_org_id(org):
        raise BadRequest(f"org: {org!r} is not an org id (1-64 characters of [a-z0-9-_])", param="org",
                         code="invalid_org")
    return org


async def get_limits(registry: Registry, request: web.Request) -> web.Response:
    return json_response(await registry.quotas.view(_org(request)))


async def put_limits(registry: Registry, request: web.Request) -> web.Response:
    org = _org(request)
    limits = await read_model(request, OrgLimits)
    await registry.quotas.identity.set_limits(org, limits)
    log.info("org_limits_set", org=org, overrides=limits.overrides())
    return json_response(await registry.quotas.view(org))
