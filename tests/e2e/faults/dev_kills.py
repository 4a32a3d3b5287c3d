"""SIGKILL `loraserve dev` in the middle of a stream of writes, start it again, and count what was lost.

Writers upload files (one request), upload files through the Uploads API (create, two parts,
complete) and create LoRAs, from several threads, and note every write answered 200. Once
enough have been answered the process is SIGKILLed mid-stream; the next one starts on the
same data dir and every noted write is looked for: the file (and its bytes), the completed
upload (completing it again must answer the same file), the LoRA. Uploads still in flight
at the kill are completed again too: that may be refused, never a 500. Blobs left with no
File are counted as orphans.
"""
from __future__ import annotations

import itertools
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

import requests

from tests.integration.fuzz.server import DevServer, start_dev_server

MODEL = "loraserve/kimi-k2-tiny"
TIMEOUT = 30


@dataclass
class Ledger:
    """What `loraserve dev` answered 200 to, and every 5xx it gave."""

    files: dict[str, bytes] = field(default_factory=dict)
    uploads: dict[str, tuple[str, list[str]]] = field(default_factory=dict)  # upload -> (file, parts)
    in_flight: dict[str, list[str]] = field(default_factory=dict)  # uploads not (yet) answered complete
    loras: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def acked(self) -> int:
        with self.lock:
            return len(self.files) + len(self.uploads) + len(self.loras)


class _Down(Exception):
    """The server went away (the kill): the write in progress was never answered."""


class Client:
    def __init__(self, server: DevServer, ledger: Ledger):
        self.server, self.ledger = server, ledger
        self.session = requests.Session()
        self.session.headers.update(server.auth())

    def call(self, method: str, path: str, **kwargs) -> requests.Response:
        try:
            response = self.session.request(method, self.server.url + path, timeout=TIMEOUT, **kwargs)
        except requests.RequestException:
            raise _Down from None
        if response.status_code >= 500:
            with self.ledger.lock:
                self.ledger.errors.append(f"{method} {path}: {response.status_code} {response.text[:200]}")
        return response

    def file(self, data: bytes, name: str = "adapter_model.safetensors") -> str | None:
        response = self.call("POST", "/v1/files", files={"file": (name, data)}, data={"purpose": "lora"})
        if response.status_code != 200:
            return None
        file_id = response.json()["id"]
        with self.ledger.lock:
            self.ledger.files[file_id] = data
        return file_id

    def upload(self, data: bytes) -> None:
        created = self.call("POST", "/v1/uploads", json={"bytes": len(data), "filename": "w.safetensors",
                                                         "mime_type": "application/octet-stream", "purpose": "lora"})
        if created.status_code != 200:
            return
        upload_id, half = created.json()["id"], len(data) // 2
        parts = []
        for piece in (data[:half], data[half:]):
            added = self.call("POST", f"/v1/uploads/{upload_id}/parts", files={"data": ("p", piece)})
            if added.status_code != 200:
                return
            parts.append(added.json()["id"])
        with self.ledger.lock:
            self.ledger.in_flight[upload_id] = parts
        done = self.call("POST", f"/v1/uploads/{upload_id}/complete", json={"part_ids": parts})
        if done.status_code == 200:
            with self.ledger.lock:
                self.ledger.in_flight.pop(upload_id)
                self.ledger.uploads[upload_id] = (done.json()["file"]["id"], parts)

    def lora(self, name: str, config_id: str, weights_id: str) -> None:
        response = self.call("POST", "/v1/loras", json={"name": name, "supported_models": [MODEL],
                                                        "config_file_id": config_id, "weights_file_id": weights_id})
        if response.status_code == 200:
            with self.ledger.lock:
                self.ledger.loras.append(response.json()["id"])


def _write_until_down(client: Client, names: itertools.count, seeds: tuple[str, str], stop: threading.Event) -> None:
    for turn in itertools.count():
        if stop.is_set():
            return
        try:
            if turn % 3 == 0:
                client.file(os.urandom(2048))
            elif turn % 3 == 1:
                client.upload(os.urandom(4096))
            else:
                client.lora(f"kill-{next(names)}", *seeds)
        except _Down:
            return


def seed_files(server: DevServer, ledger: Ledger) -> tuple[str, str]:
    client = Client(server, ledger)
    config = client.file(b'{"r": 8, "lora_alpha": 16, "target_modules": ["q_proj"]}', "adapter_config.json")
    weights = client.file(os.urandom(1024))
    assert config and weights, ledger.errors
    return config, weights


def kill_during_writes(server: DevServer, ledger: Ledger, seeds: tuple[str, str], writes: int,
                       writers: int, names: itertools.count) -> None:
    """Write from `writers` threads; SIGKILL the server once `writes` more were answered 200."""
    target = ledger.acked() + writes
    stop = threading.Event()
    threads = [threading.Thread(target=_write_until_down, args=(Client(server, ledger), names, seeds, stop),
                                daemon=True) for _ in range(writers)]
    for thread in threads:
        thread.start()
    while ledger.acked() < target and any(thread.is_alive() for thread in threads):
        stop.wait(0.01)
    server.process.kill()  # SIGKILL: no drain, no flush, no goodbye
    server.process.wait(timeout=30)
    stop.set()
    for thread in threads:
        thread.join(timeout=TIMEOUT + 5)


def count_lost(server: DevServer, ledger: Ledger) -> list[str]:
    """Every write answered 200 that the restarted server no longer has (and 5xx answers on the way)."""
    client = Client(server, ledger)
    lost = []
    for file_id, data in ledger.files.items():
        response = client.call("GET", f"/v1/files/{file_id}/content")
        if response.status_code != 200 or response.content != data:
            lost.append(f"file {file_id}: {response.status_code}")
    for upload_id, (file_id, parts) in ledger.uploads.items():
        response = client.call("POST", f"/v1/uploads/{upload_id}/complete", json={"part_ids": parts})
        if response.status_code != 200 or response.json()["file"]["id"] != file_id:
            lost.append(f"upload {upload_id}: {response.status_code} {response.text[:200]}")
    for lora_id in ledger.loras:
        response = client.call("GET", f"/v1/loras/{lora_id}")
        if response.status_code != 200:
            lost.append(f"lora {lora_id}: {response.status_code}")
    for upload_id, parts in list(ledger.in_flight.items()):  # may be refused (parts lost with the kill), never 500
        client.call("POST", f"/v1/uploads/{upload_id}/complete", json={"part_ids": parts})
    client.call("GET", "/v1/files")
    client.call("GET", "/v1/loras")
    return lost


def orphaned_files(server: DevServer) -> list[str]:
    """File blobs that no File document holds (the start-up sweep removes them before serving)."""
    client = Client(server, Ledger())
    found = []
    for path in (server.data_dir / "blobs" / "objects" / "orgs").glob("*/files/*"):
        if client.call("GET", f"/v1/files/{path.name}").status_code == 404:
            found.append(path.name)
    return found


@dataclass
class Measured:
    kills: int
    acked: int
    lost: list[str]
    errors: list[str]
    orphans: list[str]

    def summary(self) -> str:
        return (f"{len(self.lost)} of {self.acked} writes answered 200 lost over {self.kills} SIGKILLs "
                f"(5xx answers: {len(self.errors)}, orphaned file blobs: {len(self.orphans)})")


def measure(data_dir: Path, kills: int, writes: int, writers: int) -> Measured:
    """`kills` rounds of: write, SIGKILL after `writes` answers, restart, look for every answered write."""
    ledger = Ledger()
    names = itertools.count()
    server = start_dev_server(data_dir)
    lost: list[str] = []
    orphans: list[str] = []
    try:
        seeds = seed_files(server, ledger)
        for _ in range(kills):
            kill_during_writes(server, ledger, seeds, writes, writers, names)
            server = start_dev_server(data_dir)
            lost = count_lost(server, ledger)
            orphans += orphaned_files(server)
    finally:
        if server.alive():
            server.stop()
    return Measured(kills=kills, acked=ledger.acked(), lost=lost, errors=list(ledger.errors), orphans=orphans)
