"""Runs every service and a tiny-model worker as its own process over real RabbitMQ and an S3 server."""
from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from tests.fixtures.net import free_port
from tests.fixtures.secrets import PRODUCTION_SECRETS

SERVICES = ("file-ingest", "registry", "validator", "inference-router")
WORKER_MODEL = "loraserve/kimi-k2-tiny"




@dataclass
class Topology:
    root: Path
    env: dict[str, str]
    ports: dict[str, int] = field(default_factory=dict)
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    worker_args: tuple[str, ...] = ("--model", WORKER_MODEL)

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"

    def start(self, name: str) -> None:
        port = self.ports.setdefault(name, free_port())
        args = (["worker", *self.worker_args] if name == "gpu-worker" else ["serve", name])
        env = {**self.env, "LORASERVE_DATA_DIR": str(self.root / name), "LORASERVE_PORT": str(port)}
        with open(self.root / f"{name}.log", "ab") as log:  # the child keeps its own copy of the descriptor
            self.processes[name] = subprocess.Popen([sys.executable, "-m", "shared.cli.main", *args], env=env,
                                                    stdout=log, stderr=log)

    def wait_ready(self, name: str, seconds: float = 90) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.processes[name].poll() is not None:
                raise RuntimeError(f"{name} exited: {self.log_tail(name)}")
            try:
                with urllib.request.urlopen(self.url(name) + "/readyz", timeout=2) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"{name} not ready: {self.log_tail(name)}")

    def kill(self, name: str) -> None:
        process = self.processes.pop(name)
        process.kill()
        process.wait(timeout=30)

    def stop_all(self) -> None:
        for process in self.processes.values():
            process.terminate()
        for process in self.processes.values():
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
        self.processes.clear()

    def log_tail(self, name: str, chars: int = 3000) -> str:
        return (self.root / f"{name}.log").read_text(errors="replace")[-chars:]


def start_topology(root: Path, amqp_url: str, s3_endpoint: str, keys_file: Path,
                   worker_args: tuple[str, ...] = ("--model", WORKER_MODEL), worker_ready_seconds: float = 180,
                   extra_env: dict[str, str] | None = None) -> Topology:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LORASERVE_")}
    topo = Topology(root=root, env={
        **env,
        "LORASERVE_AMQP_URL": amqp_url,
        "LORASERVE_S3_ENDPOINT": s3_endpoint,
        "LORASERVE_S3_ACCESS_KEY": "testing",
        "LORASERVE_S3_SECRET_KEY": "testing",
        "LORASERVE_S3_BUCKET": "loraserve-e2e",
        "LORASERVE_KEYS_FILE": str(keys_file),
        **PRODUCTION_SECRETS,
        "LORASERVE_ENV": "production",
        **(extra_env or {}),
    }, worker_args=worker_args)
    for name in (*SERVICES, "gpu-worker"):
        topo.ports[name] = free_port()
    topo.env["LORASERVE_FILE_INGEST_URL"] = topo.url("file-ingest")
    topo.env["LORASERVE_REGISTRY_URL"] = topo.url("registry")
    for name in (*SERVICES, "gpu-worker"):
        topo.start(name)
    for name in SERVICES:
        topo.wait_ready(name, seconds=180)
    topo.wait_ready("gpu-worker", seconds=worker_ready_seconds)
    return topo
