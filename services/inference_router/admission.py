"""From a parsed request to a job: which model, which LoRA, which completion window, by when.

Every API runs the same checks in the same order: metadata limits, the model exists,
the prompt can fit its context, the LoRA is the caller's, the LoRA may serve this request.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from services.inference_router.constraints import (
    check_lora_usable,
    check_prompt_fits,
    lora_not_found,
    model_not_found,
    routing_of,
    validate_metadata,
)
from services.inference_router.lora_sync import LoraDirectory
from services.inference_router.loras import LoraView
from services.inference_router.metrics import INFERENCE_REQUESTS
from shared.catalogue.catalogue import Catalogue, ModelEntry
from shared.contracts import topology
from shared.contracts.errors import ServiceUnavailable
from shared.contracts.messages import ChatMessage, GenerateResponse, SamplingParams


@dataclass(frozen=True)
class Admitted:
    model: ModelEntry
    lora: LoraView | None
    window: str
    metadata: dict[str, str]

    @property
    def priority(self) -> int:
        return topology.PRIORITY_BY_WINDOW[self.window]


async def admit(catalogue: Catalogue, loras: LoraDirectory, org_id: str, model_id: str,
                metadata: dict[str, Any] | None, messages: list[ChatMessage], prompt_param: str) -> Admitted:
    checked = validate_metadata(metadata)
    routing = routing_of(checked)
    try:
        model = catalogue.get(model_id)
    except KeyError:
        raise model_not_found(model_id) from None
    check_prompt_fits(model, [m.content for m in messages], prompt_param)
    lora = None
    if routing.lora_ref:
        lora = await loras.resolve(org_id, routing.lora_ref)
        if lora is None:
            raise lora_not_found(routing.lora_ref)
        check_lora_usable(lora, model.id, routing.window)
        if lora.adapter is None:
            raise ServiceUnavailable(f"LoRA '{lora.name}' is known but its files are not yet; retry shortly.",
                                     code="lora_not_ready")
    INFERENCE_REQUESTS.labels(model.id, routing.window, "yes" if lora else "no").inc()
    return Admitted(model=model, lora=lora, window=routing.window, metadata=checked)


def deadline_after(seconds: float) -> float:
    return time.time() + seconds


def build_job(admitted: Admitted, *, response_id: str, org_id: str, messages: list[ChatMessage],
              sampling: SamplingParams, deadline: float, stream: bool = False,
              background: bool = False) -> GenerateResponse:
    return GenerateResponse(
        response_id=response_id, org_id=org_id, model=admitted.model.id, model_slug=admitted.model.slug,
        messages=messages, sampling=sampling, adapter=admitted.lora.adapter if admitted.lora else None,
        background=background, stream=stream, deadline=datetime.fromtimestamp(deadline, UTC),
        completion_window=admitted.window,
    )
