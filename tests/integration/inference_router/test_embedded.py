"""The router inside the embedded default: it fills its LoRA read model from the registry in the same app."""
from __future__ import annotations

import asyncio

import aiohttp
from aiohttp import web

from shared.composition import embedded_app
from shared.settings import Settings
from tests.fixtures.net import free_port


async def test_the_router_loads_the_registry_listing_after_the_app_starts(tmp_path):
    settings = Settings(data_dir=tmp_path, port=free_port())
    app = embedded_app(settings)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port)
    await site.start()
    try:
        base = f"http://{settings.host}:{settings.port}"
        ready = {}
        async with aiohttp.ClientSession() as session:
            async def poll() -> None:
                async with session.get(f"{base}/readyz") as response:
                    ready.update((await response.json())["checks"])

            for _ in range(200):  # the first load is retried with backoff until the site listens
                await poll()
                if ready.get("inference-router.0"):
                    break
                await asyncio.sleep(0.05)
            assert ready["inference-router.0"] is True
            async with session.get(f"{base}/v1/models") as response:
                assert response.status == 401  # the kit's auth covers the router's routes
    finally:
        await runner.cleanup()
