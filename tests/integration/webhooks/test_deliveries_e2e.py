"""The whole path on the embedded platform: a LoRA created through the API fails static validation, the registry
publishes the outcome, and the customer's receiver gets `lora.validation.failed` with the result code, then
`lora.deleted` when the LoRA is deleted; every delivery verified with the official SDK."""
from __future__ import annotations

import json

import openai
from aiohttp import FormData
from aiohttp.test_utils import TestClient, TestServer

from shared.composition import build_part, build_platform
from shared.http.app import create_app
from shared.settings import Settings
from tests.fixtures.net import HOST, free_port
from tests.integration.webhooks.deliveries_harness import FAST_RETRIES, Receiver, verify

SERVICES = ("file-ingest", "registry", "validator", "webhooks")
TINY = "loraserve/kimi-k2-tiny"


async def upload(client: TestClient, auth: dict, name: str, data: bytes) -> str:
    form = FormData()
    form.add_field("purpose", "lora")
    form.add_field("file", data, filename=name, content_type="application/octet-stream")
    response = await client.post("/v1/files", data=form, headers=auth)
    assert response.status == 200, await response.text()
    return (await response.json())["id"]


async def test_a_lora_failing_validation_and_then_deleted_reaches_the_receiver(tmp_path):
    port = free_port()
    platform = build_platform(Settings(data_dir=tmp_path, host=HOST, port=port, **FAST_RETRIES),
                              source="loraserve/webhooks-e2e")
    key = (await platform.identity.create("org-a"))[1]
    auth = {"Authorization": f"Bearer {key}"}
    client = TestClient(TestServer(create_app(platform, [build_part(n, platform) for n in SERVICES]),
                                   host=HOST, port=port))
    await client.start_server()
    receiver = await Receiver().start()
    sdk = openai.AsyncOpenAI(base_url=f"http://{HOST}:{port}/v1", api_key=key, max_retries=0)
    try:
        endpoint = await sdk.webhooks.create(name="lifecycle", url=receiver.url,
                                             event_types=["lora.validation.failed", "lora.deleted"])
        config = await upload(client, auth, "adapter_config.json", b'{"peft_type": "LORA", "r": 8}')
        weights = await upload(client, auth, "adapter_model.safetensors", b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
        response = await client.post("/v1/loras", headers=auth, json={
            "name": "broken-v1", "supported_models": [TINY], "config_file_id": config, "weights_file_id": weights})
        assert response.status == 200, await response.text()
        lora = await response.json()
        (headers, body), = await receiver.wait_for(1)
        failed = verify(endpoint.signing_secret, headers, body)
        assert failed.type == "lora.validation.failed"
        data = json.loads(body)["data"]
        assert (data["id"], data["name"], data["model"], data["status"]) == (lora["id"], "broken-v1", TINY, "failed")
        assert data["result_code"] and data["result_message"]
        retrieved = await (await client.get(f"/v1/loras/{lora['id']}", headers=auth)).json()
        assert retrieved["validations"][0]["result_code"] == data["result_code"]

        assert (await client.delete(f"/v1/loras/{lora['id']}", headers=auth)).status == 200
        _, (headers, body) = await receiver.wait_for(2)
        assert verify(endpoint.signing_secret, headers, body).type == "lora.deleted"
        assert json.loads(body)["data"]["id"] == lora["id"]
    finally:
        await sdk.close()
        await receiver.stop()
        await client.close()
