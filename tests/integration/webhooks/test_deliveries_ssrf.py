"""In production a delivery whose receiver's name resolves to a private address fails that attempt without
connecting, even when the name resolved to a public address when the endpoint was created (DNS rebinding).
There is no DNS here: the service is given a resolver the test controls."""
from __future__ import annotations

import asyncio
import base64
import os

from tests.fixtures.net import HOST, free_port
from tests.integration.webhooks.deliveries_harness import response_completed, start_service, wait_until

PUBLIC_ADDRESS = "93.184.216.34"


def production_settings() -> dict:
    return {"env": "production", "service_token": os.urandom(24).hex(), "key_pepper": os.urandom(24).hex(),
            "webhook_secrets_key": base64.b64encode(os.urandom(32)).decode()}


class ConnectionCounter:
    """A listener on loopback that only counts who connects (a blocked delivery must never be one of them)."""

    def __init__(self):
        self.connections = 0
        self.port = free_port()

    async def _accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        writer.close()

    async def start(self) -> asyncio.Server:
        return await asyncio.start_server(self._accepted, HOST, self.port)


async def test_a_name_that_resolves_to_loopback_at_delivery_is_never_connected(tmp_path):
    answers = {"hooks.example.com": [PUBLIC_ADDRESS]}

    async def resolver(host: str) -> list[str]:
        return answers[host]

    counter = ConnectionCounter()
    server = await counter.start()
    service = await start_service(tmp_path, resolver=resolver, **production_settings())
    try:
        endpoint = await service.sdk().webhooks.create(
            name="rebinding", url=f"https://hooks.example.com:{counter.port}/hook", event_types=["response.completed"])
        answers["hooks.example.com"] = [HOST]  # the name now points at the platform's own loopback
        await service.publish(response_completed())

        async def blocked():
            page = await service.deliveries(endpoint.id)
            attempts = [a for d in page["data"] for a in d["attempts"]]
            return page["data"] if len(attempts) >= 2 else None

        (delivery,) = await wait_until(blocked, "blocked attempts")
        assert all(a["blocked"] and a["status_code"] is None for a in delivery["attempts"])
        assert "loopback" in delivery["attempts"][0]["error"]
        assert delivery["status"] == "pending"  # retried like any failure, in case the name is fixed
        assert counter.connections == 0
    finally:
        await service.stop()
        server.close()
        await server.wait_closed()
