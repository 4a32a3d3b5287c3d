"""Files held by LoRAs cannot be deleted; another org sees nothing; the registry's internal lookup."""
from __future__ import annotations

import asyncio
import hashlib
import os

import aiohttp
import openai
import pytest

from shared.clients.files import FileIngestClient, FileIngestUnavailable
from shared.contracts.messages import AdapterRef, LoraCreated, LoraDeleted
from tests.integration.file_ingest.conftest import SERVICE_TOKEN, MiB


def lora_event(kind, lora_id: str, config_id: str, weights_id: str, org: str = "org-a"):
    adapter = AdapterRef(lora_id=lora_id, name=f"n-{lora_id}", config_file_id=config_id,
                         weights_file_id=weights_id, config_object_key=f"orgs/{org}/files/{config_id}",
                         weights_object_key=f"orgs/{org}/files/{weights_id}")
    return kind(org_id=org, lora={"id": lora_id, "name": adapter.name}, adapter=adapter, version=1)


async def folded(svc, lora_ids) -> dict[str, int]:
    docs = await svc.ctx.refs.collection.find({"_id": {"$in": list(lora_ids)}}).to_list(None)
    return {doc["_id"]: doc["events_folded"] for doc in docs}


async def published(svc, *messages) -> None:
    """Publish, then wait until file-ingest has folded every one of them."""
    lora_ids = [m.adapter.lora_id for m in messages]
    expected = await folded(svc, lora_ids)
    for message, lora_id in zip(messages, lora_ids):
        expected[lora_id] = expected.get(lora_id, 0) + 1
        await svc.platform.bus.publish(message, source="loraserve/registry-test")
    for _ in range(250):
        if await folded(svc, lora_ids) == expected:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("file-ingest did not fold the LoRA events")


async def two_files(client):
    config = await client.files.create(file=("adapter_config.json", b'{"r": 8}'), purpose="lora")
    weights = await client.files.create(file=("adapter_model.safetensors", os.urandom(1000)), purpose="lora")
    return config, weights


async def test_delete_is_refused_while_a_lora_holds_the_file_and_allowed_after(svc):
    client = svc.sdk()
    config, weights = await two_files(client)
    await published(svc, lora_event(LoraCreated, "lora-1", config.id, weights.id))

    resp = await svc.http.delete(f"/v1/files/{weights.id}", headers=svc.auth())
    assert resp.status == 409
    assert resp.headers["x-should-retry"] == "false"
    assert "lora-1" in (await resp.json())["error"]["message"]
    with pytest.raises(openai.ConflictError):
        await client.files.delete(config.id)

    await published(svc, lora_event(LoraDeleted, "lora-1", config.id, weights.id))
    assert (await client.files.delete(config.id)).deleted
    assert (await client.files.delete(weights.id)).deleted


async def test_replayed_and_reordered_events_count_each_lora_once(svc):
    client = svc.sdk()
    config, weights = await two_files(client)
    first = lora_event(LoraCreated, "lora-1", config.id, weights.id)
    second = lora_event(LoraCreated, "lora-2", config.id, weights.id)
    await published(svc, first, first, second)
    await published(svc, lora_event(LoraDeleted, "lora-1", config.id, weights.id))
    with pytest.raises(openai.ConflictError) as held:
        await client.files.delete(weights.id)
    assert "lora-2" in held.value.message and "lora-1" not in held.value.message

    # lora-2's deletion arrives, then a late redelivery of its creation: still released
    await published(svc, lora_event(LoraDeleted, "lora-2", config.id, weights.id), second)
    assert (await client.files.delete(weights.id)).deleted


async def test_another_org_gets_404_on_every_route(svc):
    owner, stranger = svc.sdk("org-a"), svc.sdk("org-b")
    file = await owner.files.create(file=("a.bin", b"secret"), purpose="lora")
    upload = await owner.uploads.create(bytes=MiB, filename="w.bin", mime_type="x/y", purpose="lora")
    part = await owner.uploads.parts.create(upload_id=upload.id, data=os.urandom(MiB))

    attempts = [
        stranger.files.retrieve(file.id),
        stranger.files.content(file.id),
        stranger.files.delete(file.id),
        stranger.uploads.parts.create(upload_id=upload.id, data=b"x"),
        stranger.uploads.complete(upload.id, part_ids=[part.id]),
        stranger.uploads.cancel(upload.id),
    ]
    for attempt in attempts:
        with pytest.raises(openai.NotFoundError):
            await attempt
    assert (await stranger.files.list()).data == []
    # the owner's objects are untouched
    assert (await owner.files.content(file.id)).content == b"secret"
    assert (await owner.uploads.complete(upload.id, part_ids=[part.id])).status == "completed"


async def test_internal_lookup_needs_the_service_token_and_the_owning_org(svc):
    file = await svc.sdk().files.create(file=("w.bin", b"weights"), purpose="lora")
    url = f"/internal/v1/files/{file.id}"
    token = {"x-service-token": SERVICE_TOKEN}

    resp = await svc.http.get(url, params={"org_id": "org-a"}, headers=token)
    assert resp.status == 200
    assert await resp.json() == {
        "id": file.id, "org_id": "org-a", "filename": "w.bin", "bytes": 7, "purpose": "lora",
        "status": "processed", "sha256": hashlib.sha256(b"weights").hexdigest(),
        "object_key": f"orgs/org-a/files/{file.id}", "created_at": file.created_at}
    assert (await svc.http.get(url, params={"org_id": "org-a"})).status == 404
    assert (await svc.http.get(url, params={"org_id": "org-a"}, headers={"x-service-token": "nope"})).status == 404
    assert (await svc.http.get(url, params={"org_id": "org-b"}, headers=token)).status == 404
    missing_org = await svc.http.get(url, headers=token)
    assert missing_org.status == 400 and (await missing_org.json())["error"]["param"] == "org_id"


async def test_the_registry_client_reads_the_lookup(svc):
    file = await svc.sdk().files.create(file=("w.bin", b"weights"), purpose="lora")
    base = str(svc.server.make_url("")).rstrip("/")
    async with aiohttp.ClientSession() as session:
        client = FileIngestClient(session, base, SERVICE_TOKEN)
        found = await client.lookup("org-a", file.id)
        assert found is not None
        assert (found.id, found.org_id, found.purpose, found.bytes) == (file.id, "org-a", "lora", 7)
        assert found.object_key == f"orgs/org-a/files/{file.id}"
        assert await client.lookup("org-b", file.id) is None
        assert await client.lookup("org-a", "file-missing") is None
        with pytest.raises(FileIngestUnavailable):
            await FileIngestClient(session, base, "wrong-token").lookup("org-a", file.id)
        with pytest.raises(FileIngestUnavailable):
            await FileIngestClient(session, "http://127.0.0.1:9", SERVICE_TOKEN).lookup("org-a", file.id)
