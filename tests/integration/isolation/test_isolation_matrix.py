"""Org isolation, as one matrix: org B calls every endpoint with every id and name of org A's objects
and gets 404 (another org's object does not exist for it), an empty list or an event stream
without A's events; and A's objects are exactly as they were afterwards.

Runs on the embedded platform (every service and the worker in one process, in-process bus).
"""
from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

from tests.integration.isolation.world import MODEL, Answer, Client, build_org_a, snapshot, start_platform
from tests.unit.validator.adapters import peft_adapter

pytestmark = pytest.mark.filterwarnings("ignore")


def lora_bodies(ref: str) -> list[tuple[str, dict]]:
    """A request naming `ref` in metadata.lora on each API that serves LoRAs."""
    metadata = {"lora": ref, "completion_window": "priority"}
    hello = [{"role": "user", "content": "hello"}]
    return [
        ("/v1/chat/completions", {"model": MODEL, "messages": hello, "max_tokens": 4, "metadata": metadata}),
        ("/v1/chat/completions", {"model": MODEL, "messages": hello, "max_tokens": 4, "stream": True,
                                  "metadata": metadata}),
        ("/v1/responses", {"model": MODEL, "input": "hello", "max_output_tokens": 4, "metadata": metadata}),
        ("/v1/responses", {"model": MODEL, "input": "hello", "max_output_tokens": 4, "background": True,
                           "metadata": metadata}),
        ("/v1/messages", {"model": MODEL, "messages": hello, "max_tokens": 4, "metadata": metadata}),
    ]


def matrix(world) -> list[tuple[str, str, dict]]:
    """(method, path, request kwargs) for every endpoint and every id or name of A's."""
    calls = []
    for file in world.files.values():
        fid = file["id"]
        calls += [("GET", f"/v1/files/{fid}", {}), ("GET", f"/v1/files/{fid}/content", {}),
                  ("DELETE", f"/v1/files/{fid}", {})]
    for upload in world.uploads.values():
        uid = upload["id"]
        calls += [("POST", f"/v1/uploads/{uid}/parts", {"data": _part_form()}),
                  ("POST", f"/v1/uploads/{uid}/complete", {"json": {"part_ids": [world.part_id]}}),
                  ("POST", f"/v1/uploads/{uid}/cancel", {})]
    for ref in (world.lora["name"], world.lora["id"]):
        calls += [("GET", f"/v1/loras/{ref}", {}),
                  ("PATCH", f"/v1/loras/{ref}", {"json": {"description": "B was here"}}),
                  ("PATCH", f"/v1/loras/{ref}", {"json": {"supported_models": [MODEL, "moonshotai/Kimi-K2.6"]}}),
                  ("DELETE", f"/v1/loras/{ref}", {})]
        calls += [("POST", path, {"json": body}) for path, body in lora_bodies(ref)]
    for response_id in world.responses.values():
        calls += [("GET", f"/v1/responses/{response_id}", {}), ("POST", f"/v1/responses/{response_id}/cancel", {})]
    return calls


def _part_form() -> aiohttp.FormData:
    form = aiohttp.FormData()
    form.add_field("data", b"B's bytes", filename="part")
    return form


def a_marks(world) -> list[str]:
    """Strings that only A's objects contain: finding one in B's answers is a leak."""
    marks = [world.lora["id"], world.part_id, *(f["id"] for f in world.files.values()),
             *(u["id"] for u in world.uploads.values()), *world.responses.values(),
             *(r["id"] for r in world.lora["validations"])]
    return marks + ["org A's own", "A's question", "A's background question"]


async def read_stream(resp: aiohttp.ClientResponse, frames: list[str], connected: asyncio.Event) -> None:
    async for line in resp.content:
        connected.set()
        frames.append(line.decode())


async def open_events(client: Client) -> tuple[aiohttp.ClientResponse, list[str], asyncio.Task]:
    resp = await client.session.get(f"{client.base}/v1/events", headers=client.headers)
    assert resp.status == 200
    frames: list[str] = []
    connected = asyncio.Event()
    reader = asyncio.create_task(read_stream(resp, frames, connected))
    await asyncio.wait_for(connected.wait(), 30)
    return resp, frames, reader


async def wait_frame(frames: list[str], needle: str) -> None:
    for _ in range(1000):
        if any(needle in frame for frame in frames):
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"no event frame with {needle!r}: {frames}")


async def events_are_isolated(a: Client, b: Client, world) -> None:
    """A changes its LoRA, then B uploads a file: B's stream shows B's event and nothing of A's."""
    a_resp, a_frames, a_reader = await open_events(a)
    b_resp, b_frames, b_reader = await open_events(b)
    try:
        await a.ok("PATCH", f"/v1/loras/{world.lora['id']}", json={"display_name": "A, renamed"})
        await wait_frame(a_frames, world.lora["id"])  # the event went out
        sentinel = await b.upload_file("b-sentinel.txt", b"B's own", purpose="assistants")
        await wait_frame(b_frames, sentinel["id"])  # and B's stream has passed the point where A's would be
        leaked = [frame for frame in b_frames for mark in a_marks(world) if mark in frame]
        assert leaked == [] and not any("org-a" in frame for frame in b_frames), leaked
    finally:
        for reader, resp in ((a_reader, a_resp), (b_reader, b_resp)):
            reader.cancel()
            resp.close()


def assert_not_found(call: tuple[str, str, dict], answer: Answer) -> None:
    method, path, kwargs = call
    assert answer.status == 404, (method, path, answer)
    names_a_lora = "/loras/" in path or "metadata" in kwargs.get("json", {})
    if names_a_lora and not path.startswith("/v1/messages"):  # Anthropic's envelope has a type, no code
        assert answer.code == "lora_not_found", (method, path, answer)


async def lists_show_nothing_of_a(b: Client, world) -> None:
    for path in ("/v1/files", "/v1/files?purpose=lora", "/v1/files?purpose=assistants", "/v1/loras",
                 "/v1/loras?order=asc&limit=100"):
        listed = await b.ok("GET", path)
        ids = {item["id"] for item in listed["data"]}
        assert not ids & set(a_marks(world)), (path, listed)
    for path in (f"/v1/loras?after={world.lora['id']}", f"/v1/files?after={world.files['config']['id']}"):
        answer = await b.call("GET", path)  # A's id as a cursor: refused or empty, never A's neighbours
        assert answer.status in (400, 404) or answer.body["data"] == [] or not (
            {item["id"] for item in answer.body["data"]} & set(a_marks(world))), (path, answer)


async def b_cannot_borrow_a_ids(b: Client, world) -> None:
    """B naming A's files in its own LoRA, or A's part in its own upload, is refused."""
    answer = await b.call("POST", "/v1/loras", json={
        "name": "b-borrowed", "supported_models": [MODEL], "config_file_id": world.files["config"]["id"],
        "weights_file_id": world.files["weights"]["id"]})
    assert answer.status in (400, 404) and "config_file_id" in json.dumps(answer.body), answer
    upload = await b.new_upload(10)
    answer = await b.call("POST", f"/v1/uploads/{upload['id']}/complete", json={"part_ids": [world.part_id]})
    assert answer.status in (400, 404), answer
    internal = await b.call("GET", f"/internal/v1/files/{world.files['config']['id']}?org_id=org-a")
    assert internal.status == 404, internal  # a user key is no service token


async def test_org_b_reaches_nothing_of_org_a(tmp_path):
    adapter = peft_adapter(r=4, lora_alpha=8, target_modules=["q_a_proj", "o_proj"])
    runner, base, keys = await start_platform(tmp_path)
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
            a, b = Client(session, base, keys["org-a"], "org-a"), Client(session, base, keys["org-b"], "org-b")
            world = await build_org_a(a, adapter.config, adapter.weights)
            await events_are_isolated(a, b, world)
            before = await snapshot(a, world)

            for call in matrix(world):
                method, path, kwargs = call
                assert_not_found(call, await b.call(method, path, **kwargs))
            await lists_show_nothing_of_a(b, world)
            await b_cannot_borrow_a_ids(b, world)
            # B may own a LoRA of the same name: it is B's, and A's stays A's
            b_files = [await b.upload_file(n, d) for n, d in (("c.json", adapter.config), ("w.st", adapter.weights))]
            own = await b.ok("POST", "/v1/loras", json={
                "name": world.lora["name"], "supported_models": [MODEL], "config_file_id": b_files[0]["id"],
                "weights_file_id": b_files[1]["id"]})
            assert own["id"] != world.lora["id"]
            assert (await b.ok("GET", f"/v1/loras/{world.lora['name']}"))["id"] == own["id"]

            assert await snapshot(a, world) == before
            # A's pending upload still holds exactly A's part: it completes into A's bytes
            rest = await a.add_part(world.uploads["pending"]["id"], adapter.config[len(adapter.config) // 2:])
            done = await a.ok("POST", f"/v1/uploads/{world.uploads['pending']['id']}/complete",
                              json={"part_ids": [world.part_id, rest.body["id"]]})
            async with session.get(f"{base}/v1/files/{done['file']['id']}/content", headers=a.headers) as resp:
                assert await resp.read() == adapter.config
    finally:
        await runner.cleanup()
