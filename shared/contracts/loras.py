"""The public LoRA object (seed: "Add a LoRA", "Validation flow"), its validation records,
the create and patch bodies, and the registry's internal listing page.

Timestamps are Unix seconds, as on every OpenAI object.
"""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.contracts.messages import AdapterRef, ValidationStatus

LoraStatus = Literal["pending_validation", "ready", "failed"]
MAX_SUPPORTED_MODELS = 16
MAX_DISPLAY_NAME = 256
MAX_DESCRIPTION = 4096
MAX_FILE_ID = 128
FILE_ID_PATTERN = r"^[A-Za-z0-9._-]+$"  # ids travel in internal URLs


class ValidationRecord(BaseModel):
    """One validation of the LoRA on one model; the latest record per model decides if it may serve."""

    id: str
    model: str
    status: ValidationStatus
    response_id: str  # "resp_…": the validation request runs under it
    result_code: str | None = None
    result_message: str | None = None
    created_at: int
    started_at: int | None = None
    finished_at: int | None = None


class Lora(BaseModel):
    id: str  # UUID
    object: Literal["lora"] = "lora"
    name: str
    display_name: str | None = None
    description: str | None = None
    supported_models: list[str]
    config_file_id: str
    weights_file_id: str
    status: LoraStatus
    validations: list[ValidationRecord]  # oldest first
    created_at: int
    updated_at: int


class LoraCreate(BaseModel):
    """POST /v1/loras. The registry checks the name rules, so that all problems are reported at once."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(max_length=256)
    supported_models: list[str] = Field(min_length=1, max_length=MAX_SUPPORTED_MODELS)
    config_file_id: str = Field(min_length=1, max_length=MAX_FILE_ID, pattern=FILE_ID_PATTERN)
    weights_file_id: str = Field(min_length=1, max_length=MAX_FILE_ID, pattern=FILE_ID_PATTERN)
    display_name: str | None = Field(None, max_length=MAX_DISPLAY_NAME)
    description: str | None = Field(None, max_length=MAX_DESCRIPTION)


class LoraPatch(BaseModel):
    """PATCH /v1/loras/{name}. `supported_models`, when given, is the new list: models added to it get a
    validation record unless their latest one already succeeded."""

    model_config = ConfigDict(extra="forbid")

    supported_models: list[str] | None = Field(None, min_length=1, max_length=MAX_SUPPORTED_MODELS)
    display_name: str | None = Field(None, max_length=MAX_DISPLAY_NAME)
    description: str | None = Field(None, max_length=MAX_DESCRIPTION)


class LoraDeletedResponse(BaseModel):
    id: str
    object: Literal["lora"] = "lora"
    deleted: bool = True


class InternalLoraEntry(BaseModel):
    """One row of GET /internal/v1/loras: the shape of a `lora.created` event's data."""

    org_id: str
    lora: Lora
    adapter: AdapterRef
    version: int


class InternalLoraPage(BaseModel):
    data: list[InternalLoraEntry]
    has_more: bool = False
    last_id: str | None = None
