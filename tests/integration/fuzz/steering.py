"""Steering schema-valid cases past the first lookup: random ids and model names are all 404s, so half of
the positive cases get a real model, real file ids, a real LoRA, upload or response (fresh ones for the
operations that delete or close what they name) and reach the code behind the lookup."""
from __future__ import annotations

import itertools
import json
import zlib
from dataclasses import dataclass, field

import requests

from tests.integration.fuzz.server import DevServer

MODEL = "loraserve/kimi-k2-tiny"
MAX_STEERED_TOKENS = 8  # the tiny model answers in milliseconds at this length
TOKEN_FIELDS = {"/v1/chat/completions": ("max_tokens", "max_completion_tokens"),
                "/v1/responses": ("max_output_tokens",), "/v1/messages": ("max_tokens",)}
CONFIG = json.dumps({"peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": MODEL, "r": 4,
                     "lora_alpha": 8, "target_modules": ["q_a_proj"]}).encode()
WEIGHTS = b"not a safetensors file: the validator refuses it without a worker"
TIMEOUT = 30


@dataclass
class Seeds:
    """Objects of org `fuzz` that steered cases name."""

    server: DevServer
    config_file_id: str = ""
    weights_file_id: str = ""
    lora_name: str = ""
    upload_id: str = ""
    response_id: str = ""
    endpoint_id: str = ""
    counter: itertools.count = field(default_factory=itertools.count)

    def call(self, method: str, path: str, **kwargs) -> dict:
        response = requests.request(method, self.server.url + path, headers=self.server.auth(), timeout=TIMEOUT,
                                    **kwargs)
        assert response.status_code == 200, (method, path, response.status_code, response.text[:300])
        return response.json()

    def file(self, name: str, data: bytes) -> str:
        return self.call("POST", "/v1/files", files={"file": (name, data)}, data={"purpose": "lora"})["id"]

    def lora(self) -> str:
        name = f"fuzz-seed-{next(self.counter)}"
        self.call("POST", "/v1/loras", json={"name": name, "supported_models": [MODEL],
                                             "config_file_id": self.config_file_id,
                                             "weights_file_id": self.weights_file_id})
        return name

    def upload(self) -> str:
        return self.call("POST", "/v1/uploads", json={"bytes": 1 << 20, "filename": "w.safetensors",
                                                      "mime_type": "application/octet-stream",
                                                      "purpose": "lora"})["id"]

    def receiver_url(self) -> str:
        return self.server.url + "/healthz"  # a receiver on loopback (`loraserve dev` accepts it) that answers 405

    def webhook_endpoint(self) -> str:
        return self.call("POST", "/v1/webhook_endpoints", json={"name": "fuzz", "url": self.receiver_url(),
                                                                "event_types": ["lora.deleted"]})["id"]

    def response(self) -> str:
        return self.call("POST", "/v1/responses", json={"model": MODEL, "input": "hi", "background": True,
                                                        "max_output_tokens": 2})["id"]


def plant_seeds(server: DevServer) -> Seeds:
    seeds = Seeds(server)
    seeds.config_file_id = seeds.file("adapter_config.json", CONFIG)
    seeds.weights_file_id = seeds.file("adapter_model.safetensors", WEIGHTS)
    seeds.lora_name = seeds.lora()
    seeds.upload_id = seeds.upload()
    seeds.response_id = seeds.response()
    seeds.endpoint_id = seeds.webhook_endpoint()
    return seeds


def path_value(seeds: Seeds, method: str, path: str, name: str) -> str | None:
    closes = method in ("DELETE",) or path.endswith(("/cancel", "/complete"))
    if name == "file_id":
        return seeds.file("f.json", b"{}") if closes else seeds.config_file_id
    if name == "ref":
        return seeds.lora() if closes else seeds.lora_name
    if name == "upload_id":
        return seeds.upload() if closes else seeds.upload_id
    if name == "response_id":
        return seeds.response() if closes else seeds.response_id
    if name == "endpoint_id":
        return seeds.webhook_endpoint() if closes else seeds.endpoint_id
    return None


def _steer_body(seeds: Seeds, method: str, path: str, body: dict) -> None:
    if path in TOKEN_FIELDS:
        body["model"] = MODEL
        for name in TOKEN_FIELDS[path]:
            if isinstance(body.get(name), int) or name == "max_tokens":
                body[name] = min(body.get(name) or MAX_STEERED_TOKENS, MAX_STEERED_TOKENS)
    elif path == "/v1/loras" and method == "POST":
        body.update(supported_models=[MODEL], config_file_id=seeds.config_file_id,
                    weights_file_id=seeds.weights_file_id)
    elif path == "/v1/loras/{ref}" and body.get("supported_models"):
        body["supported_models"] = [MODEL]
    elif path.startswith("/v1/webhook_endpoints") and method == "POST":
        if "url" in body or path == "/v1/webhook_endpoints":
            body["url"] = seeds.receiver_url()
        if "event_types" in body or path == "/v1/webhook_endpoints":
            body["event_types"] = ["lora.deleted", "response.completed"]
        if path.endswith("/test"):
            body["event_type"] = "lora.deleted"


def steer(case, seeds: Seeds) -> None:
    """Half the schema-valid cases (chosen by their content, so a run repeats itself) are steered."""
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive:
        return
    if zlib.crc32(repr((case.path_parameters, case.query, case.body)).encode()) % 2:
        return
    method, path = case.method.upper(), case.operation.path
    for name in list(case.path_parameters or {}):
        value = path_value(seeds, method, path, name)
        if value is not None:
            case.path_parameters[name] = value
    if isinstance(case.body, dict):
        _steer_body(seeds, method, path, case.body)
