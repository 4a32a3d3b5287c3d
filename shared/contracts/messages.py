"""Every message on the bus: jobs in the imperative, events in the past tense.

Each is carried inside a CloudEvent (`Message.to_event`); `MESSAGE_TYPES` maps a
CloudEvents `type` back to its model. The public ones are listed in docs/asyncapi.yaml.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, Field

from shared.contracts import topology as t
from shared.contracts.cloudevents import Message, utcnow

ValidationStatus = Literal["pending", "running", "succeeded", "failed", "unverified"]
# publishers number their own steps; the registry applies only later states
SEQ_RUNNING, SEQ_VALIDATOR_FAILED, SEQ_GPU_DONE, SEQ_UNVERIFIED = 1, 2, 3, 4


class AdapterRef(BaseModel):
    """Where a LoRA's two files lie in the blob store: everything a consumer needs to load it."""

    lora_id: str
    name: str
    config_file_id: str
    weights_file_id: str
    config_object_key: str
    weights_object_key: str
    weights_bytes: int = 0
    config_bytes: int = 0


# -- validation -------------------------------------------------------------------
class ValidateAdapter(Message):
    """Job for the validator: check one adapter against one model, statically."""

    TYPE: ClassVar[str] = "loraserve.validation.validate"
    EXCHANGE: ClassVar[str] = t.COMMANDS
    validation_id: str
    org_id: str
    model: str
    model_slug: str
    response_id: str
    adapter: AdapterRef

    def routing_key(self) -> str:
        return t.validate_key(self.model_slug)

    def subject(self) -> str:
        return self.validation_id


class RunGpuValidation(ValidateAdapter):
    """Job for the model's worker pool: load the adapter and run one request with it."""

    TYPE: ClassVar[str] = "loraserve.validation.gpu_validate"

    def routing_key(self) -> str:
        return t.gpu_validate_key(self.model_slug)


class ValidationStatusChanged(Message):
    """A validation record moved: published by the validator and the worker, folded by the registry."""

    TYPE: ClassVar[str] = "validation.status.changed"
    EXCHANGE: ClassVar[str] = t.EVENTS
    lora_id: str
    org_id: str
    model: str
    validation_id: str
    status: ValidationStatus
    seq: int
    result_code: str | None = None
    result_message: str | None = None
    occurred_at: datetime = Field(default_factory=utcnow)

    def routing_key(self) -> str:
        return t.event_key(self.org_id, self.TYPE)

    def subject(self) -> str:
        return self.validation_id


# -- public LoRA events -------------------------------------------------------------
class _LoraEvent(Message):
    EXCHANGE: ClassVar[str] = t.EVENTS
    org_id: str
    lora: dict[str, Any]  # the public LoRA object, as GET /v1/loras/{id} returns it
    adapter: AdapterRef | None = None
    version: int = 0  # increases with every change of the LoRA document

    def routing_key(self) -> str:
        return t.event_key(self.org_id, self.TYPE)

    def subject(self) -> str:
        return str(self.lora.get("id"))


class LoraCreated(_LoraEvent):
    TYPE: ClassVar[str] = "lora.created"


class LoraUpdated(_LoraEvent):
    TYPE: ClassVar[str] = "lora.updated"


class LoraDeleted(_LoraEvent):
    TYPE: ClassVar[str] = "lora.deleted"


class LoraValidationFinished(_LoraEvent):
    """A validation record reached succeeded, failed or unverified."""

    TYPE: ClassVar[str] = "lora.validation.finished"
    validation: dict[str, Any]


# -- files ------------------------------------------------------------------------
class _FileEvent(Message):
    EXCHANGE: ClassVar[str] = t.EVENTS
    org_id: str
    file: dict[str, Any]  # the OpenAI File object

    def routing_key(self) -> str:
        return t.event_key(self.org_id, self.TYPE)

    def subject(self) -> str:
        return str(self.file.get("id"))


class FileCreated(_FileEvent):
    TYPE: ClassVar[str] = "file.created"


class FileDeleted(_FileEvent):
    TYPE: ClassVar[str] = "file.deleted"


# -- inference --------------------------------------------------------------------
class ChatMessage(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: str


class SamplingParams(BaseModel):
    max_tokens: int = 256
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    stop: list[str] = Field(default_factory=list)


class GenerateResponse(Message):
    """Job for the model's worker pool: run one request, streaming to reply_to when set."""

    TYPE: ClassVar[str] = "loraserve.inference.generate"
    EXCHANGE: ClassVar[str] = t.COMMANDS
    response_id: str
    org_id: str
    model: str
    model_slug: str
    messages: list[ChatMessage]
    sampling: SamplingParams = Field(default_factory=SamplingParams)
    adapter: AdapterRef | None = None
    background: bool = False
    stream: bool = False
    deadline: datetime | None = None
    validation_id: str | None = None  # set when this request validates an adapter

    def routing_key(self) -> str:
        return t.inference_key(self.model_slug)

    def subject(self) -> str:
        return self.response_id


class CancelResponse(Message):
    TYPE: ClassVar[str] = "loraserve.inference.cancel"
    EXCHANGE: ClassVar[str] = ""  # published on the model's cancels fanout exchange
    response_id: str
    org_id: str
    model_slug: str

    def routing_key(self) -> str:
        return ""


# replies on a request's reply stream (reply_to + correlation_id), in order
class ResponseDelta(Message):
    TYPE: ClassVar[str] = "response.delta"
    EXCHANGE: ClassVar[str] = ""
    response_id: str
    index: int
    text: str


class ResponseFinished(Message):
    TYPE: ClassVar[str] = "response.finished"
    EXCHANGE: ClassVar[str] = ""
    response_id: str
    output_text: str
    finish_reason: Literal["stop", "length", "cancelled"]
    prompt_tokens: int
    completion_tokens: int


class ResponseErrored(Message):
    TYPE: ClassVar[str] = "response.errored"
    EXCHANGE: ClassVar[str] = ""
    response_id: str
    code: str
    message: str


class ResponseStatusChanged(Message):
    """A stored Response moved (background and validation requests); folded by the router."""

    TYPE: ClassVar[str] = "response.status.changed"
    EXCHANGE: ClassVar[str] = t.EVENTS
    response_id: str
    org_id: str
    model: str
    status: Literal["queued", "in_progress", "completed", "failed", "cancelled", "incomplete"]
    seq: int
    lora_id: str | None = None
    input: list[ChatMessage] | None = None
    output_text: str | None = None
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: dict[str, Any] | None = None
    occurred_at: datetime = Field(default_factory=utcnow)

    def routing_key(self) -> str:
        return t.event_key(self.org_id, self.TYPE)

    def subject(self) -> str:
        return self.response_id


MESSAGE_TYPES: dict[str, type[Message]] = {
    m.TYPE: m
    for m in (
        ValidateAdapter, RunGpuValidation, ValidationStatusChanged,
        LoraCreated, LoraUpdated, LoraDeleted, LoraValidationFinished,
        FileCreated, FileDeleted,
        GenerateResponse, CancelResponse, ResponseDelta, ResponseFinished, ResponseErrored,
        ResponseStatusChanged,
    )
}
PUBLIC_EVENT_TYPES = ("lora.created", "lora.updated", "lora.deleted", "lora.validation.finished",
                      "file.created", "file.deleted")
