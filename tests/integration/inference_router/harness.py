"""A router on an aiohttp TestServer, a LoRA listing the tests control, and a worker double on the bus.

The double answers GenerateResponse jobs the way the GPU worker's contract says (deltas then
a final reply on the reply stream; status events for background jobs) with an echo of the
last user message, naming the adapter when the job carries one.
"""
from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from typing import Any

from aiohttp.test_utils import TestServer

from services.inference_router.app import part_for, router_from
from services.inference_router.context import RouterContext
from shared.bus.base import Delivery
from shared.composition import build_platform
from shared.contracts import topology
from shared.contracts.messages import (
    AdapterRef,
    CancelResponse,
    GenerateResponse,
    ResponseDelta,
    ResponseFinished,
    ResponseStatusChanged,
)
from shared.http.app import create_app
from shared.platform import Platform
from shared.settings import Settings
from tests.fixtures.polling import eventually

TINY = "loraserve/kimi-k2-tiny"
TINY_SLUG = "kimi-k2-tiny"
BIG = "moonshotai/Kimi-K2.6"


def lora_entry(org_id: str, name: str, *, models: list[str], statuses: dict[str, str] | None = None,
               result_message: str | None = None, version: int = 1, lora_id: str | None = None) -> dict:
    lora_id = lora_id or str(uuid.uuid4())
    statuses = statuses or {m: "succeeded" for m in models}
    validations = [{"id": str(uuid.uuid4()), "model": m, "status": s, "response_id": f"resp_{uuid.uuid4().hex}",
                    "result_code": "load_failed" if s == "failed" else None,
                    "result_message": result_message if s == "failed" else None, "created_at": 1}
                   for m, s in statuses.items()]
    lora = {"id": lora_id, "object": "lora", "name": name, "supported_models": models,
            "config_file_id": "file-c", "weights_file_id": "file-w", "status": "ready",
            "validations": validations, "created_at": 1, "updated_at": 1}
    adapter = AdapterRef(lora_id=lora_id, name=name, config_file_id="file-c", weights_file_id="file-w",
                         config_object_key=f"{org_id}/c", weights_object_key=f"{org_id}/w").model_dump()
    return {"org_id": org_id, "lora": lora, "adapter": adapter, "version": version}


def echo_text(job: GenerateResponse) -> str:
    last_user = next((m.content for m in reversed(job.messages) if m.role == "user"), "")
    return f"echo: {last_user}" + (f" via {job.adapter.name}" if job.adapter else "")


@dataclass
class WorkerDouble:
    bus: Any
    source: str = "test/worker"
    go_silent_after: int | None = None  # deltas sent before the "worker" dies
    delta_pause: float = 0.0
    hold_background: bool = False
    jobs: list[GenerateResponse] = field(default_factory=list)
    priorities: list[int] = field(default_factory=list)
    correlation_ids: list[str | None] = field(default_factory=list)
    cancels: list[CancelResponse] = field(default_factory=list)
    released: asyncio.Event = field(default_factory=asyncio.Event)
    _subs: list = field(default_factory=list)

    async def start(self, slug: str = TINY_SLUG) -> None:
        self._subs.append(await self.bus.consume(topology.inference_queue(slug), self.handle))
        self._subs.append(await self.bus.subscribe(topology.cancels_exchange(slug), [""], self.on_cancel))

    async def stop(self) -> None:
        self.released.set()
        for sub in self._subs:
            await sub.close()

    async def on_cancel(self, delivery: Delivery) -> None:
        self.cancels.append(CancelResponse.from_event(delivery.event))
        self.released.set()

    async def handle(self, delivery: Delivery) -> None:
        job = GenerateResponse.from_event(delivery.event)
        self.jobs.append(job)
        self.priorities.append(delivery.priority)
        self.correlation_ids.append(delivery.event.correlationid)
        words = echo_text(job).split(" ")
        finish = "length" if len(words) > job.sampling.max_tokens else "stop"
        words = words[: job.sampling.max_tokens]
        if job.background:
            await self._run_background(job, " ".join(words), finish)
            return
        for index, word in enumerate(words):
            if self.go_silent_after is not None and index >= self.go_silent_after:
                return
            await delivery.reply(ResponseDelta(response_id=job.response_id, index=index,
                                               text=word if index == 0 else " " + word), source=self.source)
            await asyncio.sleep(self.delta_pause)
        await delivery.reply(ResponseFinished(response_id=job.response_id, output_text=" ".join(words),
                                              finish_reason=finish, prompt_tokens=len(job.messages),
                                              completion_tokens=len(words)), source=self.source)

    async def _run_background(self, job: GenerateResponse, text: str, finish: str) -> None:
        await self.publish_status(job, "in_progress", 1)
        if self.hold_background:
            await self.released.wait()
        await self.publish_status(job, "completed", 2, output_text=text, finish_reason=finish,
                                  prompt_tokens=len(job.messages), completion_tokens=len(text.split(" ")))

    async def publish_status(self, job: GenerateResponse, status: str, seq: int, **fields) -> None:
        event = ResponseStatusChanged(response_id=job.response_id, org_id=job.org_id, model=job.model,
                                      status=status, seq=seq, **fields)
        await self.bus.publish(event, source=self.source)


@dataclass
class Stack:
    platform: Platform
    router: RouterContext
    server: TestServer
    worker: WorkerDouble
    keys: dict[str, str]
    loras: dict[str, dict]
    folded: list[tuple[str, str]]  # (response_id, status) of every status event the router folded

    def url(self, path: str = "/v1") -> str:
        return str(self.server.make_url(path))

    async def close(self) -> None:
        await self.worker.stop()
        await self.server.close()


def default_loras() -> dict[str, dict]:
    return {
        "funny": lora_entry("org-a", "funny", models=[TINY]),
        "pending": lora_entry("org-a", "pending", models=[TINY], statuses={TINY: "pending"}),
        "unverified": lora_entry("org-a", "unverified", models=[TINY], statuses={TINY: "unverified"}),
        "broken": lora_entry("org-a", "broken", models=[TINY], statuses={TINY: "failed"},
                             result_message="lora_B of layers.0.self_attn.q_a_proj has NaN values"),
        "big-only": lora_entry("org-a", "big-only", models=[BIG]),
        "org-b-lora": lora_entry("org-b", "funny", models=[TINY]),
    }


async def start_stack(tmp_path, *, timeout: float = 5.0, worker: bool = True, amqp_url: str | None = None,
                      stream_idle_timeout: float = 30.0, settings: dict | None = None, **worker_options) -> Stack:
    settings = Settings(data_dir=tmp_path, sync_request_timeout_seconds=timeout, amqp_url=amqp_url,
                        stream_idle_timeout_seconds=stream_idle_timeout, **(settings or {}))
    platform = build_platform(settings, source="test/router")
    router = router_from(platform)
    loras = default_loras()

    async def listing() -> list[dict]:
        return list(loras.values())

    folded: list[tuple[str, str]] = []
    apply = router.responses.apply

    async def apply_and_record(event: ResponseStatusChanged) -> bool:
        changed = await apply(event)
        folded.append((event.response_id, event.status))
        return changed

    router.responses.apply = apply_and_record
    app = create_app(platform, [part_for(router, lambda session: listing)])
    server = TestServer(app)
    await server.start_server()
    keys = {org: (await platform.identity.create(org))[1] for org in ("org-a", "org-b")}
    double = WorkerDouble(platform.bus, **worker_options)
    if worker:
        await double.start()
    await wait_for(lambda: router.loras.model.loaded)
    return Stack(platform, router, server, double, keys, loras, folded)


wait_for = eventually  # events are asynchronous
