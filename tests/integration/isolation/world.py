"""The embedded platform on a port, two orgs, and every kind of object org A can own.

`Client` is one org's view of the HTTP API (aiohttp, Bearer key). `build_org_a` makes A's
files, uploads (pending with a part, completed, cancelled), a validated LoRA, a background
and a stored sync response; `snapshot` reads all of them back as A sees them.
"""
from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from shared.composition import embedded_app
from shared.identity.store import FileIdentityStore
from shared.settings import Settings
from tests.fixtures.net import free_port

MODEL = "loraserve/kimi-k2-tiny"
WAIT_SECONDS = 60.0




@dataclass
class Answer:
    status: int
    body: Any

    @property
    def code(self) -> str | None:
        error = self.body.get("error") if isinstance(self.body, dict) else None
        return error.get("code") if isinstance(error, dict) else None


class Client:
    def __init__(self, session: aiohttp.ClientSession, base: str, key: str, org: str):
        self.session, self.base, self.org = session, base, org
        self.headers = {"Authorization": f"Bearer {key}"}

    async def call(self, method: str, path: str, **kwargs) -> Answer:
        async with self.session.request(method, self.base + path, headers=self.headers, **kwargs) as resp:
            raw = await resp.read()
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = raw
            return Answer(resp.status, body)

    async def upload_file(self, name: str, data: bytes, purpose: str = "lora") -> dict:
        form = aiohttp.FormData()
        form.add_field("purpose", purpose)
        form.add_field("file", data, filename=name)
        answer = await self.call("POST", "/v1/files", data=form)
        assert answer.status == 200, answer
        return answer.body

    async def add_part(self, upload_id: str, data: bytes) -> Answer:
        form = aiohttp.FormData()
        form.add_field("data", data, filename="part")
        return await self.call("POST", f"/v1/uploads/{upload_id}/parts", data=form)

    async def new_upload(self, size: int) -> dict:
        answer = await self.call("POST", "/v1/uploads", json={"filename": "adapter_config.json", "bytes": size,
                                                              "purpose": "lora", "mime_type": "application/json"})
        assert answer.status == 200, answer
        return answer.body

    async def ok(self, method: str, path: str, **kwargs) -> Any:
        answer = await self.call(method, path, **kwargs)
        assert answer.status == 200, (method, path, answer)
        return answer.body

    async def until(self, path: str, done, what: str) -> dict:
        loop = asyncio.get_running_loop()
        until = loop.time() + WAIT_SECONDS
        while not done(body := await self.ok("GET", path)):
            if loop.time() > until:
                raise AssertionError(f"{what}: not within {WAIT_SECONDS} s: {body}")
            await asyncio.sleep(0.05)
        return body


@dataclass
class OrgA:
    files: dict[str, dict] = field(default_factory=dict)  # role -> File object
    uploads: dict[str, dict] = field(default_factory=dict)  # pending / completed / cancelled
    part_id: str = ""
    lora: dict = field(default_factory=dict)
    responses: dict[str, str] = field(default_factory=dict)  # role -> response id


async def start_platform(data_dir) -> tuple[web.AppRunner, str, dict[str, str]]:
    settings = Settings(data_dir=data_dir, port=free_port())
    store = FileIdentityStore(settings.keys_path, pepper=settings.key_pepper)
    keys = {org: (await store.create(org))[1] for org in ("org-a", "org-b")}
    runner = web.AppRunner(embedded_app(settings))
    await runner.setup()
    await web.TCPSite(runner, settings.host, settings.port).start()
    return runner, f"http://{settings.host}:{settings.port}", keys


async def build_org_a(a: Client, config: bytes, weights: bytes) -> OrgA:
    world = OrgA()
    world.files["config"] = await a.upload_file("adapter_config.json", config)
    world.files["weights"] = await a.upload_file("adapter_model.safetensors", weights)
    world.files["notes"] = await a.upload_file("notes.jsonl", b'{"secret": "org-a"}\n', purpose="assistants")
    await _uploads(a, world, config)
    world.lora = await a.ok("POST", "/v1/loras", json={
        "name": "a-secret-lora", "supported_models": [MODEL], "config_file_id": world.files["config"]["id"],
        "weights_file_id": world.files["weights"]["id"], "description": "org A's own"})
    world.lora = await a.until(f"/v1/loras/{world.lora['id']}", lambda lora: lora["status"] == "ready",
                               "A's LoRA validated")
    world.responses["validation"] = world.lora["validations"][0]["response_id"]
    await a.until(f"/v1/responses/{world.responses['validation']}", lambda r: r["status"] != "in_progress",
                  "A's validation response")
    background = await a.ok("POST", "/v1/responses", json={
        "model": MODEL, "input": "A's background question", "background": True, "max_output_tokens": 4,
        "metadata": {"lora": "a-secret-lora", "completion_window": "priority"}})
    world.responses["background"] = background["id"]
    await a.until(f"/v1/responses/{background['id']}", lambda r: r["status"] not in ("queued", "in_progress"),
                  "A's background response")
    stored = await a.ok("POST", "/v1/responses", json={"model": MODEL, "input": "A's question", "max_output_tokens": 4})
    world.responses["stored"] = stored["id"]
    return world


async def _uploads(a: Client, world: OrgA, config: bytes) -> None:
    pending = await a.new_upload(len(config))
    part = await a.add_part(pending["id"], config[: len(config) // 2])
    assert part.status == 200, part
    world.part_id = part.body["id"]
    completed = await a.new_upload(len(config))
    done_part = await a.add_part(completed["id"], config)
    assert done_part.status == 200, done_part
    completed = await a.ok("POST", f"/v1/uploads/{completed['id']}/complete",
                           json={"part_ids": [done_part.body["id"]]})
    world.files["from_upload"] = completed["file"]
    cancelled = await a.new_upload(len(config))
    cancelled = await a.ok("POST", f"/v1/uploads/{cancelled['id']}/cancel")
    world.uploads = {"pending": pending, "completed": completed, "cancelled": cancelled}


async def snapshot(a: Client, world: OrgA) -> dict:
    """Everything of A's, read as A: it must not change while B pokes at it."""
    view = {"files": await a.ok("GET", "/v1/files"), "loras": await a.ok("GET", "/v1/loras")}
    for role, file in world.files.items():
        view[f"file:{role}"] = await a.ok("GET", f"/v1/files/{file['id']}")
        async with a.session.get(f"{a.base}/v1/files/{file['id']}/content", headers=a.headers) as resp:
            view[f"content:{role}"] = (resp.status, await resp.read())
    for ref in (world.lora["id"], world.lora["name"]):
        view[f"lora:{ref}"] = await a.ok("GET", f"/v1/loras/{ref}")
    for role, response_id in world.responses.items():
        view[f"response:{role}"] = await a.ok("GET", f"/v1/responses/{response_id}")
    return view
