"""`loraserve dev` as a subprocess on a free port, with a temp data dir and seeded keys: the platform as a
user runs it, so whatever the fuzzers send meets the real app and nothing in the test's own event loop."""
from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tests.fixtures.net import free_port

# two orgs: the fuzzers create objects in one; the other only ever sends requests that must be refused
KEYS = {"fuzz": "sk-fuzz-0123456789", "tidy": "sk-tidy-0123456789"}
# short, so that a stalled client is cut off within a test's patience
BODY_IDLE_TIMEOUT_SECONDS = 1.0
MANAGEMENT_REQUESTS_PER_WINDOW = 1_000_000




@dataclass
class DevServer:
    data_dir: Path
    port: int
    process: subprocess.Popen

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "server.log"

    def auth(self, org: str = "fuzz") -> dict[str, str]:
        return {"Authorization": f"Bearer {KEYS[org]}"}

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


def wait_ready(server: DevServer, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not server.alive():
            raise RuntimeError(f"loraserve dev exited: {server.log_tail()}")
        try:
            with urllib.request.urlopen(server.url + "/readyz", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"loraserve dev not ready after {seconds}s: {server.log_tail()}")


def start_dev_server(data_dir: Path, ready_seconds: float = 120) -> DevServer:
    data_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LORASERVE_")}
    env["LORASERVE_BODY_IDLE_TIMEOUT_SECONDS"] = str(BODY_IDLE_TIMEOUT_SECONDS)
    # the long fuzz sends thousands of management requests a minute: past the limit it would test only the 429
    env["LORASERVE_RATELIMIT_MANAGEMENT_REQUESTS_PER_MINUTE"] = str(MANAGEMENT_REQUESTS_PER_WINDOW)
    # steered cases create webhook endpoints by the hundred: past the quota they would test only the 403
    env["LORASERVE_QUOTA_WEBHOOK_ENDPOINTS"] = str(MANAGEMENT_REQUESTS_PER_WINDOW)
    # and uploads, files and LoRAs by the thousand (uploads declaring up to 100 GiB each): the same for their quotas
    for quota in ("PENDING_UPLOADS", "FILES", "LORAS", "VALIDATIONS_IN_FLIGHT"):
        env[f"LORASERVE_QUOTA_{quota}"] = str(MANAGEMENT_REQUESTS_PER_WINDOW)
    env["LORASERVE_QUOTA_STORED_BYTES"] = str(2**60)
    keys = [arg for org, key in KEYS.items() for arg in ("--api-key", f"{org}={key}")]
    with open(data_dir / "server.log", "ab") as log:  # the child keeps its own copy of the descriptor
        process = subprocess.Popen(
            [sys.executable, "-m", "shared.cli.main", "dev", "--host", "127.0.0.1", "--port", str(port),
             "--data-dir", str(data_dir), *keys], env=env, stdout=log, stderr=subprocess.STDOUT)
    server = DevServer(data_dir=data_dir, port=port, process=process)
    try:
        wait_ready(server, ready_seconds)
    except BaseException:
        server.stop()
        raise
    return server
