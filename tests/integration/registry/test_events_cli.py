"""`loraserve events tail`: JSON lines from GET /v1/events, resumed with Last-Event-ID when the connection
drops (a proxy between the CLI and the server cuts it), `--since ID|DURATION`, and the error event."""
from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys

from tests.fixtures.net import free_port
from tests.integration.registry.conftest import WAIT_SECONDS
from tests.integration.registry.test_events_replay import publish_files, wait_logged


class DroppingProxy:
    """A TCP proxy to the server whose open connections the test can cut, as a flaky network would."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.writers: set[asyncio.StreamWriter] = set()
        self.connections = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._pipe_both_ways, "127.0.0.1", self.port)

    async def _pipe_both_ways(self, client_reader, client_writer) -> None:
        self.connections += 1
        server_reader, server_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self.writers |= {client_writer, server_writer}
        await asyncio.gather(self._copy(client_reader, server_writer),
                             self._copy(server_reader, client_writer))

    async def _copy(self, reader, writer) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    def drop(self) -> None:
        for writer in list(self.writers):
            writer.transport.abort()
        self.writers.clear()

    async def close(self) -> None:
        self.drop()
        self.server.close()


async def tail(stack, base_url: str, *args: str) -> asyncio.subprocess.Process:
    env = {**os.environ, "LORASERVE_API_KEY": stack.keys["org-a"], "LORASERVE_BASE_URL": base_url + "/v1"}
    command = [sys.executable, "-m", "shared.cli.main", "events", "tail", *args]
    return await asyncio.create_subprocess_exec(*command, env=env, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)


async def lines(process: asyncio.subprocess.Process, count: int) -> list[dict]:
    return [json.loads(await asyncio.wait_for(process.stdout.readline(), WAIT_SECONDS)) for _ in range(count)]


async def stop(process: asyncio.subprocess.Process) -> str:
    if process.returncode is None:
        process.terminate()
    await process.wait()
    return (await process.stderr.read()).decode()


async def test_tail_prints_json_lines_and_resumes_after_dropped_connections_losing_none(stack):
    published = await publish_files(stack, 20)
    proxy = DroppingProxy(stack.server.port)
    await proxy.start()
    process = await tail(stack, f"http://127.0.0.1:{proxy.port}", "--since", "0")
    try:
        printed = await lines(process, 20)
        for _ in range(2):
            proxy.drop()  # the CLI reconnects with Last-Event-ID while more events come
            published += await publish_files(stack, 15)
            printed += await lines(process, 15)
    finally:
        stderr = await stop(process)
        await proxy.close()
    assert [line["id"] for line in printed] == list(range(1, 51))
    assert [line["data"]["id"] for line in printed] == published  # each once, in order
    assert {line["event"] for line in printed} == {"file.created"}
    assert proxy.connections >= 3 and "reconnecting after event 20" in stderr


async def test_tail_since_a_duration_or_an_id_and_an_unknown_id_is_an_error(stack):
    published = await publish_files(stack, 5)
    await wait_logged(stack, "org-a", 5)
    process = await tail(stack, stack.base_url, "--since", "10m", "--type", "file.*")
    try:
        assert [line["data"]["id"] for line in await lines(process, 5)] == published
    finally:
        await stop(process)
    process = await tail(stack, stack.base_url, "--since", "3")
    try:
        assert [line["id"] for line in await lines(process, 2)] == [4, 5]
    finally:
        await stop(process)

    process = await tail(stack, stack.base_url, "--since", "99")
    assert await asyncio.wait_for(process.wait(), WAIT_SECONDS) == 1
    assert "event_id_unknown" in await stop(process)
