"""A generation request, the engine's state for it while it runs, and what each step reports."""
from __future__ import annotations

import time
from dataclasses import dataclass, field

from services.gpu_worker.adapters.adapter_weights import AdapterWeights
from services.gpu_worker.engines.torch_engine.lora_ops import NO_ADAPTER
from services.gpu_worker.engines.torch_engine.sampling import RowSampler, SamplingSpec
from services.gpu_worker.engines.torch_engine.text_stream import TextStream


@dataclass
class GenerationRequest:
    request_id: str
    prompt: list[int]
    max_tokens: int = 256
    sampling: SamplingSpec = field(default_factory=SamplingSpec)
    stop: list[str] = field(default_factory=list)
    adapter_key: str | None = None  # the adapter's identity in the slot table (the LoRA id)
    adapter: AdapterWeights | None = None  # checked weights, ready to copy into a slot
    submitted_at: float = field(default_factory=time.monotonic)


@dataclass(frozen=True)
class RequestUpdate:
    request_id: str
    text: str = ""  # new final text since the last update
    finished: bool = False
    finish_reason: str | None = None  # stop | length | cancelled
    output_text: str = ""  # the whole output, on the final update
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error_code: str | None = None
    error_message: str | None = None


@dataclass
class Sequence:
    request: GenerationRequest
    sampler: RowSampler
    text: TextStream
    slot: int = NO_ADAPTER
    row: int = -1
    tokens: list[int] = field(default_factory=list)  # sampled so far; the last is not yet in the cache

    @property
    def request_id(self) -> str:
        return self.request.request_id

    def progress(self, delta: str) -> RequestUpdate:
        return RequestUpdate(self.request_id, text=delta, prompt_tokens=len(self.request.prompt),
                             completion_tokens=len(self.tokens))

    def finished(self, reason: str, delta: str = "") -> RequestUpdate:
        return RequestUpdate(self.request_id, text=delta + self.text.finish(), finished=True, finish_reason=reason,
                             output_text=self.text.text, prompt_tokens=len(self.request.prompt),
                             completion_tokens=len(self.tokens))

    def failed(self, code: str, message: str) -> RequestUpdate:
        return RequestUpdate(self.request_id, finished=True, error_code=code, error_message=message,
                             prompt_tokens=len(self.request.prompt), completion_tokens=len(self.tokens))


def rejected(request: GenerationRequest, code: str, message: str) -> RequestUpdate:
    return RequestUpdate(request.request_id, finished=True, error_code=code, error_message=message,
                         prompt_tokens=len(request.prompt))
