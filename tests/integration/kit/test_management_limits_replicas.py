"""The management limit held across processes: two inference-router processes and a registry process
(`loraserve serve ...`, as replicas run) counting in one Redis give an org one limit, whichever process answers;
another org is not limited. Needs the redis-server on 127.0.0.1:6379 that `make test` starts."""
from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from pathlib import Path

import aiohttp
import pytest

from shared.identity.store import FileIdentityStore
from shared.settings import Settings
from tests.fixtures.net import HOST, free_port, stop

SHARED_REDIS = "redis://127.0.0.1:6379/0"
START_TIMEOUT_S = 60.0  # a safety net for the processes' start, never an assertion about speed


def serve(service: str, data_dir: Path, keys_file: Path, per_window: int) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LORASERVE_")}
    env.update(LORASERVE_DATA_DIR=str(data_dir), LORASERVE_KEYS_FILE=str(keys_file),
               LORASERVE_REDIS_URL=SHARED_REDIS, LORASERVE_RATELIMIT_WINDOW_SECONDS="30",
               LORASERVE_RATELIMIT_MANAGEMENT_REQUESTS_PER_MINUTE=str(per_window),
               LORASERVE_RATELIMIT_FAIL_OPEN="false")
    data_dir.mkdir(parents=True)
    with open(data_dir / "server.log", "ab") as log:
        process = subprocess.Popen([sys.executable, "-m", "shared.cli.main", "serve", service, "--host", HOST,
                                    "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT)
    return process, f"http://{HOST}:{port}"


async def wait_healthy(session: aiohttp.ClientSession, process: subprocess.Popen, url: str) -> None:
    loop = asyncio.get_running_loop()
    until = loop.time() + START_TIMEOUT_S
    while loop.time() < until:
        assert process.poll() is None, f"{url} exited with status {process.returncode}"
        try:
            async with session.get(f"{url}/healthz") as response:
                if response.status == 200:
                    return
        except aiohttp.ClientConnectionError:
            pass
        await asyncio.sleep(0.1)
    raise AssertionError(f"{url} did not answer /healthz")


@pytest.fixture
async def replicas(tmp_path):
    """Base URLs of two routers and a registry sharing Redis and a key file, and a key per org."""
    keys_file = tmp_path / "keys.json"
    store = FileIdentityStore(keys_file, pepper=Settings().key_pepper)
    orgs = [f"org-{uuid.uuid4().hex[:12]}" for _ in range(2)]  # fresh counters in the shared Redis
    keys = {org: (await store.create(org))[1] for org in orgs}
    started = [serve(service, tmp_path / f"{service}-{i}", keys_file, per_window=3)
               for i, service in enumerate(("inference-router", "inference-router", "registry"))]
    try:
        async with aiohttp.ClientSession() as session:
            for process, url in started:
                await wait_healthy(session, process, url)
        yield [url for _, url in started], keys
    finally:
        for process, _ in started:
            stop(process)


async def get(session: aiohttp.ClientSession, url: str, key: str) -> tuple[int, str | None]:
    async with session.get(url, headers={"Authorization": f"Bearer {key}"}) as response:
        return response.status, response.headers.get("x-ratelimit-remaining-requests")


async def test_two_routers_and_a_registry_sharing_redis_enforce_one_limit_per_org(replicas):
    (router_1, router_2, registry), keys = replicas
    org_a, org_b = keys
    paths = [f"{router_1}/v1/models", f"{router_2}/v1/models", f"{registry}/v1/loras"] * 2
    async with aiohttp.ClientSession() as session:
        answers = [await get(session, url, keys[org_a]) for url in paths]
        assert answers == [(200, "2"), (200, "1"), (200, "0"), (429, "0"), (429, "0"), (429, "0")]
        assert await get(session, f"{router_2}/v1/models", keys[org_b]) == (200, "2")
