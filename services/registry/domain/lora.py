"""The stored LoRA document: the public object plus what only the platform sees."""
from __future__ import annotations

import uuid

from pydantic import BaseModel, Field

from shared.contracts.loras import Lora, ValidationRecord
from shared.contracts.messages import AdapterRef


def new_lora_id() -> str:
    return str(uuid.uuid4())


def new_validation_id() -> str:
    return f"val_{uuid.uuid4().hex}"


def new_response_id() -> str:
    return f"resp_{uuid.uuid4().hex}"


class LoraDocument(Lora):
    org_id: str
    adapter: AdapterRef  # blob keys and sizes, copied from file-ingest at create time
    version: int = 1  # increases with every change; carried by every lora.* event
    created_ns: int  # list order and cursor; created_at alone ties within a second
    # validation id -> the serving engine's capabilities fingerprint when the record was made (engines.py)
    engines: dict[str, str] = Field(default_factory=dict)

    def public(self) -> Lora:
        return Lora.model_validate(self.model_dump(include=set(Lora.model_fields)))

    def record(self, validation_id: str) -> ValidationRecord | None:
        return next((r for r in self.validations if r.id == validation_id), None)


def pending_record(model: str, now: int) -> ValidationRecord:
    return ValidationRecord(id=new_validation_id(), model=model, status="pending",
                            response_id=new_response_id(), created_at=now)


class NewLora(BaseModel):
    """What the create handler checked, ready to become a document."""

    org_id: str
    name: str
    display_name: str | None
    description: str | None
    supported_models: list[str]
    adapter: AdapterRef


def create_document(spec: NewLora, now_ns: int) -> LoraDocument:
    now = now_ns // 1_000_000_000
    return LoraDocument(
        id=spec.adapter.lora_id, name=spec.name, display_name=spec.display_name, description=spec.description,
        supported_models=list(spec.supported_models), config_file_id=spec.adapter.config_file_id,
        weights_file_id=spec.adapter.weights_file_id, status="pending_validation",
        validations=[pending_record(model, now) for model in spec.supported_models],
        created_at=now, updated_at=now, org_id=spec.org_id, adapter=spec.adapter, created_ns=now_ns,
    )
