"""The SSRF guard: what a receiver URL may be and where a delivery may connect, at create, update and test().

Names are resolved by an injected resolver (there is no DNS here). Production mode takes only https to public
addresses (an operator allow-list aside); `loraserve dev` settings take http and loopback. A refused target is
never connected to: raw TCP listeners count the connections they accept."""
from __future__ import annotations

import asyncio
import base64
import os

import openai
import pytest

from services.webhooks.egress import Egress
from shared.settings import Settings
from tests.fixtures.net import HOST
from tests.integration.webhooks.deliveries_harness import Receiver, start_service

TYPES = ["lora.deleted"]
PUBLIC = "93.184.216.34"
PRODUCTION = {"env": "production", "service_token": "t" * 64, "key_pepper": "p" * 64,
              "webhook_secrets_key": base64.b64encode(os.urandom(32)).decode()}
REFUSED = {"127.0.0.1": "loopback", "10.1.2.3": "private", "192.168.0.7": "private", "172.20.0.1": "private",
           "169.254.169.254": "cloud metadata", "fd00:ec2::254": "cloud metadata", "::ffff:127.0.0.1": "loopback",
           "::ffff:169.254.169.254": "cloud metadata", "100.64.1.1": "CGNAT", "0.0.0.0": "unspecified",
           "::": "unspecified", "::1": "loopback", "fe80::1": "link-local", "fc00::5": "private",
           "224.0.0.1": "multicast", "240.0.0.1": "reserved"}


class Names:
    """The injected resolver: host -> addresses, changeable between calls (DNS rebinding), counting lookups."""

    def __init__(self, **table: list[str]):
        self.table = {host.replace("_", "."): addresses for host, addresses in table.items()}
        self.lookups: list[str] = []

    async def __call__(self, host: str) -> list[str]:
        self.lookups.append(host)
        if host not in self.table:
            raise OSError(f"unknown host {host}")
        return self.table[host]


class Listener:
    """A raw TCP port that counts the connections it accepts (what a probe of an internal port would reach)."""

    def __init__(self):
        self.accepted = 0
        self.server: asyncio.Server | None = None

    async def start(self) -> Listener:
        async def accept(reader, writer):
            self.accepted += 1
            writer.close()
        self.server = await asyncio.start_server(accept, HOST, 0)
        return self

    @property
    def port(self) -> int:
        return self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        self.server.close()
        await self.server.wait_closed()


@pytest.fixture
async def listener():
    started = await Listener().start()
    yield started
    await started.stop()


async def started(tmp_path, names: Names, **settings):
    return await start_service(tmp_path / "data", resolver=names, **settings)


async def refused_create(client, url: str) -> openai.BadRequestError:
    with pytest.raises(openai.BadRequestError) as refused:
        await client.webhooks.create(name="x", url=url, event_types=TYPES)
    assert (refused.value.body["code"], refused.value.body["param"]) == ("invalid_url", "url"), url
    return refused.value


async def test_production_takes_only_https_to_public_addresses(tmp_path):
    names = Names(hooks_example_com=[PUBLIC], **{f"h{i}_example_com": [a] for i, a in enumerate(REFUSED)},
                  mixed_example_com=[PUBLIC, "10.0.0.1"])
    service = await started(tmp_path, names, **PRODUCTION)
    try:
        client = service.sdk()
        assert "https" in (await refused_create(client, "http://hooks.example.com/hook")).message
        for i, (address, kind) in enumerate(REFUSED.items()):
            assert kind in (await refused_create(client, f"https://h{i}.example.com/hook")).message, address
        assert "10.0.0.1" in (await refused_create(client, "https://mixed.example.com/hook")).message
        for literal in ("https://127.0.0.1/hook", "https://[::ffff:7f00:1]/hook", "https://169.254.169.254/x",
                        "https://localhost/hook", "https://[::1]:8443/hook"):
            await refused_create(client, literal)
        created = await client.webhooks.create(name="ok", url="https://hooks.example.com/hook", event_types=TYPES)
        with pytest.raises(openai.BadRequestError):
            await client.webhooks.update(created.id, url="https://h0.example.com/hook")
        assert (await client.webhooks.retrieve(created.id)).url == "https://hooks.example.com/hook"
    finally:
        await service.stop()


async def test_an_operator_allow_list_opens_exactly_its_ranges(tmp_path):
    names = Names(inside_corp=["10.1.2.3"], loop_corp=["127.0.0.1"], meta_corp=["169.254.169.254"])
    service = await started(tmp_path, names, **PRODUCTION, webhook_allowed_cidrs="10.0.0.0/8, 192.168.5.0/24")
    try:
        client = service.sdk()
        await client.webhooks.create(name="ok", url="https://inside.corp/hook", event_types=TYPES)
        await refused_create(client, "https://loop.corp/hook")
        await refused_create(client, "https://meta.corp/hook")
    finally:
        await service.stop()


async def test_a_name_that_rebinds_to_loopback_is_refused_at_test_without_connecting(tmp_path, listener):
    names = Names(hooks_example_com=[PUBLIC])
    service = await started(tmp_path, names, **PRODUCTION)
    try:
        client = service.sdk()
        created = await client.webhooks.create(name="x", url=f"https://hooks.example.com:{listener.port}/hook",
                                               event_types=TYPES)
        names.table["hooks.example.com"] = ["127.0.0.1"]  # the attacker's DNS answers differently now
        with pytest.raises(openai.BadRequestError) as refused:
            await client.webhooks.test(created.id, event_type="lora.deleted")
        assert refused.value.body["code"] == "invalid_url" and "loopback" in refused.value.message
        assert listener.accepted == 0
    finally:
        await service.stop()


async def test_dev_without_private_receivers_never_connects_to_loopback(tmp_path, listener):
    service = await started(tmp_path, Names(), webhook_allow_private=False)
    try:
        client = service.sdk()
        await refused_create(client, f"http://127.0.0.1:{listener.port}/hook")
        assert listener.accepted == 0
    finally:
        await service.stop()


async def test_dev_connects_to_the_address_it_checked_with_the_name_as_host(tmp_path):
    receiver = await Receiver().start()
    names = Names(receiver_test=[HOST])
    service = await started(tmp_path, names)
    try:
        client = service.sdk()
        created = await client.webhooks.create(name="x", url=f"http://receiver.test:{receiver.port}/hook",
                                               event_types=TYPES)
        lookups = len(names.lookups)
        assert (await client.webhooks.test(created.id, event_type="lora.deleted")).status_code == 200
        [(headers, _)] = await receiver.wait_for(1)
        assert headers["host"] == f"receiver.test:{receiver.port}"
        assert len(names.lookups) == lookups + 1  # resolved once for the send, never again by the HTTP client
    finally:
        await service.stop()
        await receiver.stop()


async def test_redirects_are_not_followed(tmp_path):
    target = await Receiver().start()
    redirecting = await Receiver(default=307).start()
    service = await started(tmp_path, Names())
    try:
        client = service.sdk()
        created = await client.webhooks.create(name="x", url=redirecting.url, event_types=TYPES)
        assert (await client.webhooks.test(created.id, event_type="lora.deleted")).status_code == 307
        assert target.requests == []
    finally:
        await service.stop()
        await redirecting.stop()
        await target.stop()


async def test_proxy_variables_are_ignored(tmp_path, monkeypatch, listener):
    receiver = await Receiver().start()
    service = await started(tmp_path, Names())
    try:
        client = service.sdk()  # made before the variables are set: the test's own client goes direct
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
            monkeypatch.setenv(name, f"http://{HOST}:{listener.port}")
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        created = await client.webhooks.create(name="x", url=receiver.url, event_types=TYPES)
        assert (await client.webhooks.test(created.id, event_type="lora.deleted")).status_code == 200
        assert listener.accepted == 0 and len(receiver.requests) == 1
    finally:
        await service.stop()
        await receiver.stop()


async def test_a_receiver_that_does_not_answer_is_reported_not_waited_for(tmp_path, listener):
    service = await started(tmp_path, Names(), webhook_timeout_seconds=0.5)
    try:
        silent = await asyncio.start_server(lambda r, w: asyncio.sleep(3600), HOST, 0)
        port = silent.sockets[0].getsockname()[1]
        client = service.sdk()
        created = await client.webhooks.create(name="x", url=f"http://{HOST}:{port}/hook", event_types=TYPES)
        with pytest.raises(openai.BadRequestError) as unreachable:
            await client.webhooks.test(created.id, event_type="lora.deleted")
        assert unreachable.value.body["code"] == "webhook_unreachable" and "timed out" in unreachable.value.message
        silent.close()
    finally:
        await service.stop()


async def test_a_huge_answer_is_read_only_up_to_the_bound():
    from aiohttp import web
    app = web.Application()
    app.router.add_post("/hook", lambda request: web.Response(body=b"x" * (8 * 1024 * 1024)))
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, HOST, 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    try:
        egress = Egress(Settings(webhook_max_response_bytes=1024))
        sent = await egress.post(f"http://{HOST}:{port}/hook", b"{}", {"content-type": "application/json"})
        assert (sent.status, sent.blocked, sent.error) == (200, False, None)
        assert len(sent.body) <= 1024
    finally:
        await runner.cleanup()
