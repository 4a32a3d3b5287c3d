"""Operators' adapter pins on this worker: `GET/POST /internal/v1/worker/pins`, `DELETE .../pins/{lora_id}`.

Service token only, like every /internal route. A pin names a LoRA id (names are per org, ids are
global); once loaded, a pinned LoRA's adapter is never evicted from a slot or from CPU memory. Pins
are this process's: each worker replica takes its own calls (`LORASERVE_WORKER_PINNED_LORAS` sets the
same pins on every replica at start). A pin that would leave no slot for the other adapters is
refused with 409: pins are always fewer than the slots.
"""
from __future__ import annotations

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from services.gpu_worker.adapters.residency import MAX_LORA_ID_CHARS, PinLimit, Residency
from shared.contracts.errors import Conflict, NotFound
from shared.http.requests import json_response, read_model
from shared.logging import get_logger

log = get_logger("gpu_worker.pins")
PINS_PATH = "/internal/v1/worker/pins"


class PinRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    lora_id: str = Field(min_length=1, max_length=MAX_LORA_ID_CHARS, pattern=r"^[^:\s]+$")


def _view(residency: Residency) -> dict:
    return {"object": "list", "data": residency.pins, "max_pins": residency.max_pins}


def pin_routes(residency: Residency) -> list[web.RouteDef]:
    async def list_pins(request: web.Request) -> web.Response:
        return json_response(_view(residency))

    async def add_pin(request: web.Request) -> web.Response:
        body = await read_model(request, PinRequest)
        try:
            added = residency.pin(body.lora_id)
        except PinLimit as exc:
            raise Conflict(str(exc), param="lora_id", code="too_many_pins") from None
        log.info("adapter_pinned", lora_id=body.lora_id, added=added)
        return json_response(_view(residency), status=201 if added else 200)

    async def remove_pin(request: web.Request) -> web.Response:
        lora_id = request.match_info["lora_id"]
        if not residency.unpin(lora_id):
            raise NotFound(f"LoRA {lora_id!r} is not pinned on this worker", code="pin_not_found")
        log.info("adapter_unpinned", lora_id=lora_id)
        return json_response(_view(residency))

    return [web.get(PINS_PATH, list_pins, allow_head=False), web.post(PINS_PATH, add_pin),
            web.delete(PINS_PATH + "/{lora_id}", remove_pin)]
