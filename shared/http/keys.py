"""Typed application keys shared by the kit and the services."""
from __future__ import annotations

from aiohttp import web

from shared.platform import Platform

PLATFORM = web.AppKey("platform", Platform)
ORG_ID = web.RequestKey("org_id", str)
API_KEY_ID = web.RequestKey("api_key_id", str)  # the caller's key record id, when the store knows it
REQUEST_ID = web.RequestKey("request_id", str)
# headers a handler wants on its response, errors and streams included (e.g. rate-limit headers)
RESPONSE_HEADERS = web.RequestKey("response_headers", dict)
