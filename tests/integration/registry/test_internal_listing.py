"""The internal listing a fresh router reads: every org's LoRAs with blob keys and versions, service token only."""
import aiohttp

from shared.clients.registry import RegistryClient, RegistryUnavailable
from tests.integration.registry.conftest import SERVICE_TOKEN


async def test_the_client_pages_through_every_orgs_loras(stack):
    created = []
    for org in ("org-a", "org-b"):
        files = await stack.adapter_files(org)
        for name in ("one", "two"):
            created.append((org, (await (await stack.create(name=name, org=org, files=files)).json())))
    await stack.http.delete("/v1/loras/two", headers=stack.auth("org-b"))
    async with aiohttp.ClientSession() as session:
        client = RegistryClient(session, stack.base_url, SERVICE_TOKEN, page_size=1)
        entries = [entry async for entry in client.list_all()]
    assert [(e.org_id, e.lora.id) for e in entries] == [(org, lora["id"]) for org, lora in created[:3]]
    first = entries[0]
    assert first.lora.model_dump(mode="json") == created[0][1] and first.version == 1
    assert first.adapter.lora_id == first.lora.id and first.adapter.weights_object_key


async def test_without_the_service_token_the_listing_does_not_exist(stack):
    resp = await stack.http.get("/internal/v1/loras")
    assert resp.status == 404
    resp = await stack.http.get("/internal/v1/loras", headers={"x-service-token": "wrong"})
    assert resp.status == 404
    async with aiohttp.ClientSession() as session:
        client = RegistryClient(session, stack.base_url, "wrong")
        try:
            [entry async for entry in client.list_all()]
        except RegistryUnavailable as exc:
            assert "404" in str(exc)
        else:
            raise AssertionError("a wrong token must not list anything")


async def test_a_bad_cursor_is_a_400(stack):
    resp = await stack.http.get("/internal/v1/loras", params={"after": "nope"},
                                headers={"x-service-token": SERVICE_TOKEN})
    assert resp.status == 400 and (await resp.json())["error"]["param"] == "after"
