"""The multi-process topology with fault hooks, and a small client for the public API.

`FaultTopology` is the e2e topology whose validator and worker read their blobs through
their own `FaultProxy`, and which can SIGKILL and restart one service. `Api` is what a user
does over HTTP (requests and the OpenAI SDK), with waits that fail after generous limits.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import requests

from tests.e2e.faults.s3_faults import FaultProxy
from tests.e2e.topology import SERVICES, Topology, free_port
from tests.fixtures.secrets import PRODUCTION_SECRETS

MODEL = "loraserve/kimi-k2-tiny"
ALL = (*SERVICES, "gpu-worker")
WAIT_SECONDS = 240.0
ACTIVE_RESPONSE = ("queued", "in_progress")
# the tiny model answers this prompt greedily with ~980 tokens (it runs into its 1024-token context;
# most prompts stop within a few hundred): seconds of generation in which to break something
LONG_PROMPT, LONG = "Poem number long.", 960


@dataclass
class FaultTopology(Topology):
    overrides: dict[str, dict[str, str]] = field(default_factory=dict)

    def start(self, name: str) -> None:
        port = self.ports.setdefault(name, free_port())
        args = ["worker", "--model", MODEL] if name == "gpu-worker" else ["serve", name]
        env = {**self.env, **self.overrides.get(name, {}),
               "LORASERVE_DATA_DIR": str(self.root / name), "LORASERVE_PORT": str(port)}
        with open(self.root / f"{name}.log", "ab") as log:  # the child keeps its own copy
            self.processes[name] = subprocess.Popen([sys.executable, "-m", "shared.cli.main", *args], env=env,
                                                    stdout=log, stderr=log)

    def sigkill(self, name: str) -> None:
        self.kill(name)  # Popen.kill is SIGKILL: no drain, no acks, no goodbyes

    def restart(self, name: str) -> float:
        """Start `name` again; returns the seconds until it answered /readyz."""
        started = time.monotonic()
        self.start(name)
        self.wait_ready(name, seconds=WAIT_SECONDS)
        return time.monotonic() - started

    def wipe_worker_cache(self) -> None:
        """The worker's disk cache (only while it is down): its next run fetches adapters again."""
        shutil.rmtree(self.root / "gpu-worker" / "worker-cache", ignore_errors=True)

    def log_events(self, name: str, event: str) -> list[dict]:
        found = []
        for line in (self.root / f"{name}.log").read_text(errors="replace").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and record.get("event") == event:
                found.append(record)
        return found

    def all_ready(self) -> bool:
        for name in ALL:
            try:
                if requests.get(self.url(name) + "/readyz", timeout=2).status_code != 200:
                    return False
            except requests.RequestException:
                return False
        return True


def start_fault_topology(root: Path, amqp_url: str, s3_endpoint: str, keys_file: Path,
                         proxies: dict[str, FaultProxy]) -> FaultTopology:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LORASERVE_")}
    topo = FaultTopology(root=root, env={
        **env,
        "LORASERVE_AMQP_URL": amqp_url,
        "LORASERVE_S3_ENDPOINT": s3_endpoint,
        "LORASERVE_S3_ACCESS_KEY": "testing",
        "LORASERVE_S3_SECRET_KEY": "testing",
        "LORASERVE_S3_BUCKET": "loraserve-rel",
        "LORASERVE_KEYS_FILE": str(keys_file),
        **PRODUCTION_SECRETS,
        "LORASERVE_ENV": "production",
    }, overrides={name: {"LORASERVE_S3_ENDPOINT": proxy.endpoint} for name, proxy in proxies.items()})
    for name in ALL:
        topo.ports[name] = free_port()
    topo.env["LORASERVE_FILE_INGEST_URL"] = topo.url("file-ingest")
    topo.env["LORASERVE_REGISTRY_URL"] = topo.url("registry")
    # file-ingest first: it makes the bucket the others read from
    topo.start("file-ingest")
    topo.wait_ready("file-ingest", seconds=WAIT_SECONDS)
    for name in ALL[1:]:
        topo.start(name)
    for name in ALL[1:]:
        topo.wait_ready(name, seconds=WAIT_SECONDS)
    return topo


def wait_until(condition: Callable[[], object], what: str, seconds: float = WAIT_SECONDS, pause: float = 0.2):
    """Poll until `condition()` is truthy and return it; fail (never hang) after `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {seconds} s")
        time.sleep(pause)


@dataclass
class Registered:
    lora: dict
    config_file_id: str
    weights_file_id: str

    @property
    def name(self) -> str:
        return self.lora["name"]

    @property
    def response_id(self) -> str:
        return self.lora["validations"][0]["response_id"]


class Api:
    def __init__(self, topo: FaultTopology, key: str):
        self.topo, self.key = topo, key
        self.headers = {"Authorization": f"Bearer {key}"}

    def _url(self, service: str, path: str) -> str:
        return f"{self.topo.url(service)}/v1{path}"

    def upload(self, path: Path) -> str:
        with open(path, "rb") as handle:
            resp = requests.post(self._url("file-ingest", "/files"), headers=self.headers, timeout=60,
                                 files={"file": (path.name, handle)}, data={"purpose": "lora"})
        assert resp.status_code == 200, resp.text
        return resp.json()["id"]

    def upload_adapter(self, adapter_dir: Path) -> tuple[str, str]:
        return (self.upload(adapter_dir / "adapter_config.json"),
                self.upload(adapter_dir / "adapter_model.safetensors"))

    def create_lora(self, name: str, config_file_id: str, weights_file_id: str) -> requests.Response:
        return requests.post(self._url("registry", "/loras"), headers=self.headers, timeout=60, json={
            "name": name, "supported_models": [MODEL], "config_file_id": config_file_id,
            "weights_file_id": weights_file_id})

    def register(self, name: str, files: tuple[str, str]) -> Registered:
        resp = self.create_lora(name, *files)
        assert resp.status_code == 200, resp.text
        return Registered(resp.json(), *files)

    def lora(self, ref: str) -> dict:
        resp = requests.get(self._url("registry", f"/loras/{ref}"), headers=self.headers, timeout=30)
        assert resp.status_code == 200, resp.text
        return resp.json()

    def wait_lora_done(self, ref: str, seconds: float = WAIT_SECONDS) -> dict:
        return wait_until(lambda: (lora := self.lora(ref))["status"] != "pending_validation" and lora,
                          f"LoRA {ref} leaving pending_validation", seconds)

    def response(self, response_id: str) -> dict | None:
        resp = requests.get(self._url("inference-router", f"/responses/{response_id}"), headers=self.headers,
                            timeout=30)
        return resp.json() if resp.status_code == 200 else None

    def wait_response(self, response_id: str, done: Callable[[dict], bool],
                      seconds: float = WAIT_SECONDS) -> dict:
        return wait_until(lambda: (doc := self.response(response_id)) is not None and done(doc) and doc,
                          f"response {response_id}", seconds)

    def delete_file(self, file_id: str) -> requests.Response:
        return requests.delete(self._url("file-ingest", f"/files/{file_id}"), headers=self.headers, timeout=30)

    def chat(self, lora: str, max_tokens: int = 8) -> requests.Response:
        return requests.post(self._url("inference-router", "/chat/completions"), headers=self.headers, timeout=60,
                             json={"model": MODEL, "messages": [{"role": "user", "content": "Hi"}],
                                   "max_tokens": max_tokens, "temperature": 0, "metadata": {"lora": lora}})

    def background(self, max_output_tokens: int = LONG, lora: str | None = None, prompt: str = LONG_PROMPT) -> dict:
        metadata = {"lora": lora, "completion_window": "priority"} if lora else None
        body = {"model": MODEL, "input": [{"role": "user", "content": prompt}], "background": True,
                "max_output_tokens": max_output_tokens, "temperature": 0}
        if metadata:
            body["metadata"] = metadata
        resp = requests.post(self._url("inference-router", "/responses"), headers=self.headers, json=body,
                             timeout=60)
        assert resp.status_code == 200, resp.text
        return resp.json()


def is_terminal_response(doc: dict) -> bool:
    return doc["status"] not in ACTIVE_RESPONSE


def output_text(doc: dict) -> str:
    """The text of a Response object's output messages (what the SDKs call `output_text`)."""
    return "".join(part.get("text", "") for item in doc.get("output") or [] for part in item.get("content") or [])


class EventTap:
    """GET /v1/events read on a thread: every frame's (type, data) as it arrives."""

    def __init__(self, api: Api):
        self.api = api
        self.events: list[tuple[str, dict]] = []
        self.connected = threading.Event()
        self.stopped = False
        self.thread = threading.Thread(target=self._read, daemon=True)

    def start(self) -> EventTap:
        self.thread.start()
        if not self.connected.wait(60):
            raise AssertionError("GET /v1/events did not connect")
        return self

    def _read(self) -> None:
        url = f"{self.api.topo.url('registry')}/v1/events"
        with requests.get(url, headers=self.api.headers, stream=True, timeout=(10, 60)) as resp:
            kind = None
            for raw in resp.iter_lines(decode_unicode=True):
                self.connected.set()
                if self.stopped:
                    return
                if raw.startswith("event: "):
                    kind = raw[len("event: "):]
                elif raw.startswith("data: ") and kind:
                    self.events.append((kind, json.loads(raw[len("data: "):])))

    def saw(self, kind: str, lora_name: str) -> bool:
        return any(k == kind and data.get("data", {}).get("lora", {}).get("name") == lora_name
                   for k, data in self.events)

    def stop(self) -> None:
        self.stopped = True
