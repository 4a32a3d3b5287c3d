"""The webhook-endpoints API through the official openai SDK: create, retrieve, update, list (paging), rotate,
test, delete, event types; the secret shown only at create and rotate and never stored readable; another org's
endpoint is a 404; unknown event types and the per-org endpoint quota are refused in OpenAI's envelope."""
from __future__ import annotations

import base64
import json
import os

import openai
import pytest

from services.webhooks.event_types import EVENT_TYPES
from shared.composition import service_app
from shared.settings import DEV_WEBHOOK_SECRETS_KEY, Settings, UnsafeSettings
from tests.integration.webhooks.deliveries_harness import Receiver, start_service, verify

TYPES = ["lora.validation.failed", "response.completed"]


@pytest.fixture
async def service(tmp_path):
    started = await start_service(tmp_path / "data")
    yield started
    await started.stop()


@pytest.fixture
async def receiver():
    started = await Receiver().start()
    yield started
    await started.stop()


async def test_an_endpoint_through_its_whole_life(service, receiver):
    client = service.sdk()
    created = await client.webhooks.create(name="ops", url=receiver.url, event_types=TYPES)
    assert created.object == "webhook_endpoint" and created.id.startswith("whep_")
    assert created.signing_secret.startswith("whsec_") and created.signing_secret_hint.endswith(
        created.signing_secret[-4:])
    assert created.event_types == TYPES and created.status == "enabled"

    raw = await client.webhooks.with_raw_response.retrieve(created.id)
    shown = json.loads(raw.content)
    assert "signing_secret" not in shown and created.signing_secret not in raw.text
    assert shown["signing_secret_hint"] == created.signing_secret_hint and shown["url"] == receiver.url

    renamed = await client.webhooks.update(created.id, name="ops-2", event_types=["lora.deleted"])
    assert (renamed.name, renamed.event_types, renamed.url) == ("ops-2", ["lora.deleted"], receiver.url)
    unchanged = await client.webhooks.update(created.id, name="ops-2")
    assert unchanged.updated_at == renamed.updated_at

    deleted = await client.webhooks.delete(created.id)
    assert (deleted.id, deleted.deleted, deleted.object) == (created.id, True, "webhook_endpoint.deleted")
    with pytest.raises(openai.NotFoundError):
        await client.webhooks.retrieve(created.id)


async def test_list_pages_newest_first_as_the_sdk_pages_it(service, receiver):
    client = service.sdk()
    made = [(await client.webhooks.create(name=f"e{i}", url=receiver.url, event_types=TYPES)).id for i in range(5)]
    first = await client.webhooks.list(limit=2)
    assert [e.id for e in first.data] == made[::-1][:2] and first.has_more
    assert [e.id async for e in client.webhooks.list(limit=2)] == made[::-1]
    after = await client.webhooks.list(after=made[1])
    assert [e.id for e in after.data] == [made[0]] and not after.has_more
    with pytest.raises(openai.BadRequestError) as bad:
        await client.webhooks.list(after="whep_nothing")
    assert bad.value.body["code"] == "invalid_cursor"


async def test_the_test_event_is_signed_so_the_sdk_verifies_it(service, receiver):
    client = service.sdk()
    created = await client.webhooks.create(name="ops", url=receiver.url, event_types=TYPES)
    result = await client.webhooks.test(created.id, event_type="response.completed")
    assert (result.object, result.success, result.status_code) == ("webhook_endpoint.test", True, 200)
    assert (result.webhook_endpoint_id, result.event_type) == (created.id, "response.completed")
    [(headers, body)] = await receiver.wait_for(1)
    event = client.webhooks.unwrap(body, headers, secret=created.signing_secret)
    assert (event.type, event.object) == ("response.completed", "event")
    assert headers["webhook-id"] == event.id


async def test_the_test_reports_what_the_receiver_answered(service):
    failing = await Receiver(default=503).start()
    try:
        client = service.sdk()
        created = await client.webhooks.create(name="ops", url=failing.url, event_types=TYPES)
        result = await client.webhooks.test(created.id, event_type="lora.validation.failed")
        assert (result.success, result.status_code) == (True, 503)
    finally:
        await failing.stop()


async def test_rotation_shows_the_new_secret_once_and_signs_with_both_for_the_grace(service, receiver):
    client = service.sdk()
    created = await client.webhooks.create(name="ops", url=receiver.url, event_types=TYPES)
    rotated = await client.webhooks.rotate_secret(created.id, keep_old_secret_active_for_24_hours=True)
    assert rotated.signing_secret.startswith("whsec_") and rotated.signing_secret != created.signing_secret
    assert rotated.signing_secret_hint.endswith(rotated.signing_secret[-4:])
    shown = json.loads((await client.webhooks.with_raw_response.retrieve(created.id)).content)
    assert "signing_secret" not in shown and rotated.signing_secret not in json.dumps(shown)

    await client.webhooks.test(created.id, event_type="lora.deleted")
    [(headers, body)] = await receiver.wait_for(1)
    assert len(headers["webhook-signature"].split()) == 2
    assert verify(created.signing_secret, headers, body).type == "lora.deleted"
    assert verify(rotated.signing_secret, headers, body).type == "lora.deleted"

    again = await client.webhooks.rotate_secret(created.id)  # the SDK's default: the old one retires at once
    await client.webhooks.test(created.id, event_type="lora.deleted")
    headers, body = (await receiver.wait_for(2))[1]
    assert len(headers["webhook-signature"].split()) == 1
    assert verify(again.signing_secret, headers, body).type == "lora.deleted"
    with pytest.raises(openai.InvalidWebhookSignatureError):
        verify(rotated.signing_secret, headers, body)


async def test_the_stored_documents_hold_no_usable_secret(service, receiver, tmp_path):
    client = service.sdk()
    created = await client.webhooks.create(name="ops", url=receiver.url, event_types=TYPES)
    rotated = await client.webhooks.rotate_secret(created.id, keep_old_secret_active_for_24_hours=True)
    await service.stop()  # the embedded store writes its files
    dump = b"".join(p.read_bytes() for p in (tmp_path / "data").rglob("*") if p.is_file())
    assert created.id.encode() in dump and rotated.signing_secret_hint.encode() in dump
    for secret in (created.signing_secret, rotated.signing_secret):
        assert secret.encode() not in dump and secret[len("whsec_"):].encode() not in dump


async def test_another_orgs_endpoint_is_a_404_everywhere(service, receiver):
    mine, theirs = service.sdk("org-a"), service.sdk("org-b")
    created = await mine.webhooks.create(name="ops", url=receiver.url, event_types=TYPES)
    calls = [theirs.webhooks.retrieve(created.id), theirs.webhooks.update(created.id, name="x"),
             theirs.webhooks.rotate_secret(created.id), theirs.webhooks.test(created.id, event_type="lora.deleted"),
             theirs.webhooks.delete(created.id)]
    for call in calls:
        with pytest.raises(openai.NotFoundError):
            await call
    assert (await theirs.webhooks.list()).data == []
    assert receiver.requests == []
    assert (await mine.webhooks.retrieve(created.id)).name == "ops"


async def test_event_types_are_listed_with_what_they_mean(service):
    listed = await service.sdk().webhooks.event_types.list()
    assert listed.object == "list" and listed.data == list(EVENT_TYPES)
    assert {"lora.validation.succeeded", "lora.validation.failed", "lora.validation.unverified", "lora.deleted",
            "response.completed", "response.failed", "response.cancelled", "response.incomplete"} == set(listed.data)
    assert set(listed.descriptions) == set(listed.data)


async def test_unknown_event_types_are_refused_by_name(service, receiver):
    client = service.sdk()
    with pytest.raises(openai.BadRequestError) as created:
        await client.webhooks.create(name="ops", url=receiver.url, event_types=["lora.deleted", "batch.completed"])
    assert "batch.completed" in created.value.message and created.value.body["param"] == "event_types[1]"
    endpoint = await client.webhooks.create(name="ops", url=receiver.url, event_types=TYPES)
    with pytest.raises(openai.BadRequestError) as updated:
        await client.webhooks.update(endpoint.id, event_types=["lora.exploded"])
    assert "lora.exploded" in updated.value.message
    with pytest.raises(openai.BadRequestError) as tested:
        await client.webhooks.test(endpoint.id, event_type="video.completed")
    assert "video.completed" in tested.value.message and receiver.requests == []


async def test_urls_that_are_no_receiver_are_refused(service):
    client = service.sdk()
    for url in ("ftp://hooks.example.com/x", "http://user:pw@127.0.0.1/x", "not a url", "http:///nohost"):
        with pytest.raises(openai.BadRequestError) as refused:
            await client.webhooks.create(name="ops", url=url, event_types=TYPES)
        assert (refused.value.body["code"], refused.value.body["param"]) == ("invalid_url", "url"), url


async def test_the_endpoint_quota(tmp_path, receiver):
    service = await start_service(tmp_path / "data", quota_webhook_endpoints=2)
    try:
        client = service.sdk()
        made = [await client.webhooks.create(name=f"e{i}", url=receiver.url, event_types=TYPES) for i in range(2)]
        with pytest.raises(openai.PermissionDeniedError) as refused:
            await client.webhooks.create(name="third", url=receiver.url, event_types=TYPES)
        assert (refused.value.body["code"], refused.value.body["param"]) == ("quota_exceeded", "webhook_endpoints")
        assert refused.value.response.headers["x-should-retry"] == "false"
        await service.sdk("org-b").webhooks.create(name="theirs", url=receiver.url, event_types=TYPES)
        await client.webhooks.delete(made[0].id)
        await client.webhooks.create(name="third", url=receiver.url, event_types=TYPES)
    finally:
        await service.stop()


def test_production_refuses_to_start_without_a_real_sealing_key(tmp_path):
    secrets = {"env": "production", "service_token": "t" * 64, "key_pepper": "p" * 64, "data_dir": tmp_path}
    for key in ({}, {"webhook_secrets_key": DEV_WEBHOOK_SECRETS_KEY}, {"webhook_secrets_key": "c2hvcnQ="}):
        with pytest.raises(UnsafeSettings, match="LORASERVE_WEBHOOK_SECRETS_KEY"):
            service_app(Settings(**secrets, **key), "webhooks")


async def test_after_a_key_change_test_asks_for_a_rotation_and_rotation_heals_it(tmp_path, receiver):
    first = await start_service(tmp_path / "data")
    created = await first.sdk().webhooks.create(name="ops", url=receiver.url, event_types=TYPES)
    keys = first.keys
    await first.stop()
    other_key = base64.b64encode(os.urandom(32)).decode()
    second = await start_service(tmp_path / "data", keys=keys, webhook_secrets_key=other_key)
    try:
        client = second.sdk()
        with pytest.raises(openai.ConflictError) as unreadable:
            await client.webhooks.test(created.id, event_type="lora.deleted")
        assert unreadable.value.body["code"] == "secret_unreadable" and receiver.requests == []
        rotated = await client.webhooks.rotate_secret(created.id)
        await client.webhooks.test(created.id, event_type="lora.deleted")
        [(headers, body)] = await receiver.wait_for(1)
        assert verify(rotated.signing_secret, headers, body).type == "lora.deleted"
    finally:
        await second.stop()


def test_a_malformed_sealing_key_stops_the_service_with_a_message(tmp_path):
    with pytest.raises(UnsafeSettings, match="LORASERVE_WEBHOOK_SECRETS_KEY"):
        service_app(Settings(data_dir=tmp_path, webhook_secrets_key="not base64!"), "webhooks")
