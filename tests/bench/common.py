"""What the benchmarks share: peak RSS, percentiles, the table and the final JSON line, and the
multi-process topology (a private RabbitMQ vhost, moto's S3 server as its own process, every
service and a tiny-model worker each its own process) with a trained LoRA registered on it.

Benchmarks print figures and never assert timings; the last line each prints is one JSON object.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import math
import signal
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Self

import psutil
import requests

from shared.identity.store import FileIdentityStore
from tests.e2e.conftest import PHRASE, PROMPT
from tests.e2e.topology import Topology, start_topology
from tests.fixtures.rabbit import private_vhost
from tests.fixtures.s3 import moto_process
from tests.fixtures.secrets import KEY_PEPPER

MiB = 1024 * 1024
TINY_MODEL = "loraserve/kimi-k2-tiny"
CPU_NOTE = (f"{psutil.cpu_count()} CPUs shared with whatever else runs here: figures are rough, "
            "compare the ratios within one run")


# -- process hygiene and memory ----------------------------------------------------------------
def exit_on_sigterm() -> None:
    """`timeout` sends SIGTERM: unwind (finally blocks stop child processes, drop the vhost) instead of dying."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


def peak_rss_mib(pid: int | None = None) -> float:
    """The process's high-water mark of resident memory (VmHWM), which catches peaks a sampler misses."""
    status = Path(f"/proc/{pid or 'self'}/status").read_text()
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc status (Linux only)")


class RssSampler:
    """Samples a process's RSS with psutil on a thread (a cross-check of VmHWM, and the idle figure)."""

    def __init__(self, pid: int, interval: float = 0.05):
        self.process, self.interval = psutil.Process(pid), interval
        self.max_mib = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(psutil.Error):
                self.max_mib = max(self.max_mib, self.process.memory_info().rss / MiB)
            self._stop.wait(self.interval)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


# -- figures -----------------------------------------------------------------------------------
def percentile(values: Sequence[float], q: float) -> float:
    """Linear interpolation between the closest ranks (numpy's default); NaN when there are none."""
    if not values:
        return math.nan
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def print_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    cells = [[_cell(value) for value in row] for row in rows]
    widths = [max(len(str(h)), *(len(row[i]) for row in cells)) for i, h in enumerate(headers)]
    print("  ".join(str(h).ljust(w) for h, w in zip(headers, widths)))
    print("  ".join("-" * w for w in widths))
    for row in cells:
        print("  ".join(value.ljust(w) for value, w in zip(row, widths)), flush=True)


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)


def emit(result: dict) -> dict:
    """Print the result as the last line: one JSON object, floats to 4 significant digits."""
    rounded = {k: _rounded(v) for k, v in result.items()}
    print(json.dumps(rounded), flush=True)
    return result


def _rounded(value: object) -> object:
    if isinstance(value, float):
        return float(f"{value:.4g}") if math.isfinite(value) else None  # JSON has no NaN
    return value


# -- the multi-process topology --------------------------------------------------------------
def rabbit_vhost():
    """A private vhost on the local broker, deleted afterwards."""
    return private_vhost("loraserve-bench")


def moto_server():
    """moto's S3 server as a child process (its CPU and memory are not the benchmark process's)."""
    return moto_process()


async def new_key(keys_file: Path, org: str = "org-bench") -> str:
    _, key = await FileIdentityStore(keys_file, pepper=KEY_PEPPER).create(org)
    return key


def make_key(keys_file: Path, org: str = "org-bench") -> str:
    return asyncio.run(new_key(keys_file, org))


@contextlib.contextmanager
def topology(root: Path) -> Iterator[tuple[Topology, str]]:
    """Every service and a worker, each its own process, over real RabbitMQ; yields it and an API key."""
    keys_file = root / "keys.json"
    key = make_key(keys_file)
    (root / "topology").mkdir(parents=True, exist_ok=True)
    with rabbit_vhost() as amqp_url, moto_server() as s3_endpoint:
        started = time.monotonic()
        try:
            topo = start_topology(root / "topology", amqp_url, s3_endpoint, keys_file)
        except BaseException:
            _kill_started_services()  # start_topology keeps no handle on what it started before failing
            raise
        try:
            print(f"topology ready in {time.monotonic() - started:.1f} s "
                  f"(ports: {', '.join(f'{n} {p}' for n, p in topo.ports.items())})", flush=True)
            yield topo, key
        finally:
            topo.stop_all()


def _kill_started_services() -> None:
    for child in psutil.Process().children():
        with contextlib.suppress(psutil.Error):
            if "shared.cli.main" in child.cmdline():
                child.kill()
                child.wait(timeout=30)


# -- a LoRA to serve -----------------------------------------------------------------------------
def train_adapter(root: Path) -> Path:
    """The e2e suite's phrase adapter for the tiny model (~2 s): adapter_config.json + adapter_model.safetensors."""
    from transformers.utils import logging as transformers_logging

    from services.gpu_worker.models.tiny_model import export_model
    from services.gpu_worker.models.training import train_phrase_adapter

    transformers_logging.disable_progress_bar()  # keep the benchmark's output a readable log

    model_dir = root / "loraserve" / "kimi-k2-tiny"  # base_model_name_or_path must end in the model id
    export_model(TINY_MODEL, model_dir)
    train_phrase_adapter(model_dir, PROMPT, PHRASE, root / "adapter")
    return root / "adapter"


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def register_lora(topo: Topology, key: str, adapter_dir: Path, name: str, seconds: float = 180) -> dict:
    """Upload the adapter's two files, create the LoRA, and wait until its validation is over."""
    file_ids = []
    for filename in ("adapter_config.json", "adapter_model.safetensors"):
        with open(adapter_dir / filename, "rb") as file:
            response = requests.post(f"{topo.url('file-ingest')}/v1/files", headers=auth(key), timeout=60,
                                     data={"purpose": "lora"}, files={"file": (filename, file)})
        response.raise_for_status()
        file_ids.append(response.json()["id"])
    response = requests.post(f"{topo.url('registry')}/v1/loras", headers=auth(key), timeout=30, json={
        "name": name, "supported_models": [TINY_MODEL], "config_file_id": file_ids[0],
        "weights_file_id": file_ids[1]})
    response.raise_for_status()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        lora = requests.get(f"{topo.url('registry')}/v1/loras/{name}", headers=auth(key), timeout=10).json()
        if lora["status"] != "pending_validation":
            return lora
        time.sleep(0.5)
    raise RuntimeError(f"validation of {name} did not finish: {topo.log_tail('gpu-worker')}")
