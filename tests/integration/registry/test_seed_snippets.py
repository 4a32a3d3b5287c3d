"""The seed's own snippets, unchanged but for the base URL: upload with the openai SDK, create and fetch
with requests, against the running service."""
import asyncio

import requests
from openai import OpenAI

from tests.integration.registry.conftest import TINY


def seed_flow(base_url: str, key: str, adapter_dir) -> dict:
    client = OpenAI(base_url=f"{base_url}/v1", api_key=key, max_retries=0)
    with open(adapter_dir / "adapter_config.json", "rb") as f:
        cfg = client.files.create(file=f, purpose="lora")
    with open(adapter_dir / "adapter_model.safetensors", "rb") as f:
        wts = client.files.create(file=f, purpose="lora")

    resp = requests.post(
        f"{base_url}/v1/loras",
        headers={"Authorization": f"Bearer {key}"},
        json={
            "name": "funnier-v1",
            "supported_models": [TINY],
            "config_file_id": cfg.id,
            "weights_file_id": wts.id,
            # optional
            "display_name": "Funnier v1",
            "description": "Fine-tuned on a standup-comedy corpus to write punchier, joke-forward replies.",
        },
        timeout=30,
    )
    resp.raise_for_status()
    lora = resp.json()
    headers = {"Authorization": f"Bearer {key}"}
    return {
        "status_code": resp.status_code,
        "created": lora,
        "files": (cfg.id, wts.id),
        "by_name": requests.get(f"{base_url}/v1/loras/funnier-v1", headers=headers, timeout=10).json(),
        "by_id": requests.get(f"{base_url}/v1/loras/{lora['id']}", headers=headers, timeout=10).json(),
        "listed": requests.get(f"{base_url}/v1/loras", headers=headers, timeout=10).json(),
    }


async def test_the_seed_flow(stack, tmp_path):
    adapter_dir = tmp_path / "my-adapter"
    adapter_dir.mkdir()
    (adapter_dir / "adapter_config.json").write_text('{"peft_type": "LORA", "r": 8}')
    (adapter_dir / "adapter_model.safetensors").write_bytes(b"\x02\x00\x00\x00\x00\x00\x00\x00{}")
    out = await asyncio.to_thread(seed_flow, stack.base_url, stack.keys["org-a"], adapter_dir)
    lora = out["created"]
    assert out["status_code"] == 200
    assert lora["status"] == "pending_validation" and lora["name"] == "funnier-v1"
    assert lora["supported_models"] == [TINY]
    assert (lora["config_file_id"], lora["weights_file_id"]) == out["files"]
    [record] = lora["validations"]
    assert record["model"] == TINY and record["status"] == "pending" and record["response_id"].startswith("resp_")
    assert out["by_name"] == lora and out["by_id"] == lora
    assert out["listed"]["object"] == "list" and out["listed"]["data"] == [lora]
