"""Typed application keys shared by the kit and the services."""
from __future__ import annotations

from aiohttp import web

from shared.platform import Platform

PLATFORM = web.AppKey("platform", Platform)
ORG_ID = web.RequestKey("org_id", str)
REQUEST_ID = web.RequestKey("request_id", str)
