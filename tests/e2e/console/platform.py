"""What the console tests set up through the public API (not through the browser): LoRAs to look at."""
from __future__ import annotations

import json
import shutil
import urllib.error
import urllib.request
from pathlib import Path

from openai import OpenAI

from tests.integration.fuzz.server import KEYS, DevServer

MODEL = "loraserve/kimi-k2-tiny"


def call(server: DevServer, method: str, path: str, org: str = "fuzz", body: dict | None = None) -> tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(server.url + path, data=data, method=method,
                                     headers={**server.auth(org), "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def create_lora(server: DevServer, adapter_dir: Path, name: str, org: str = "fuzz", **fields) -> dict:
    client = OpenAI(base_url=server.url + "/v1", api_key=KEYS[org])
    ids = {}
    for key, filename in (("config_file_id", "adapter_config.json"), ("weights_file_id", "adapter_model.safetensors")):
        with open(adapter_dir / filename, "rb") as handle:
            ids[key] = client.files.create(file=handle, purpose="lora").id
    status, lora = call(server, "POST", "/v1/loras", org,
                        {"name": name, "supported_models": [MODEL], **ids, **fields})
    assert status == 200, lora
    return lora


def broken_copy(adapter_dir: Path, target: Path) -> Path:
    """The adapter with a config the validator refuses for several reasons at once."""
    target.mkdir(parents=True, exist_ok=True)
    shutil.copy(adapter_dir / "adapter_model.safetensors", target)
    config = json.loads((adapter_dir / "adapter_config.json").read_text())
    config.update(r=999, task_type="SEQ_CLS")
    (target / "adapter_config.json").write_text(json.dumps(config))
    return target
