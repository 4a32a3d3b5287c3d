"""The Files and Uploads APIs on the wire (OpenAI's shapes) and file-ingest's internal lookup model."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

# `lora` is ours; the rest are OpenAI's, accepted so generic clients keep working
FILE_PURPOSES = (
    "lora", "assistants", "assistants_output", "batch", "batch_output", "fine-tune",
    "fine-tune-results", "vision", "user_data", "evals",
)
FilePurpose = Literal[
    "lora", "assistants", "assistants_output", "batch", "batch_output", "fine-tune",
    "fine-tune-results", "vision", "user_data", "evals",
]
FileStatus = Literal["uploaded", "processed", "error"]
UploadStatus = Literal["pending", "completed", "cancelled", "expired"]
MAX_FILENAME_CHARS = 255
MAX_PART_IDS = 10_000  # S3's limit on the parts of one object


class FileObject(BaseModel):
    """OpenAI's File object."""

    id: str
    object: Literal["file"] = "file"
    bytes: int
    created_at: int  # unix seconds
    filename: str
    purpose: str
    status: FileStatus = "processed"
    expires_at: int | None = None
    status_details: str | None = None


class FileDeletedObject(BaseModel):
    id: str
    object: Literal["file"] = "file"
    deleted: bool = True


class UploadObject(BaseModel):
    """OpenAI's Upload object; `file` is set once the upload is completed."""

    id: str
    object: Literal["upload"] = "upload"
    bytes: int
    created_at: int
    expires_at: int
    filename: str
    purpose: str
    status: UploadStatus
    file: FileObject | None = None


class UploadPartObject(BaseModel):
    id: str
    object: Literal["upload.part"] = "upload.part"
    created_at: int
    upload_id: str


class ExpiresAfter(BaseModel):
    """Accepted for SDK compatibility; files here never expire on their own."""

    model_config = ConfigDict(extra="forbid")
    anchor: Literal["created_at"]
    seconds: int = Field(ge=3600, le=2_592_000)


class CreateUploadBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    bytes: int = Field(ge=1)
    filename: str = Field(min_length=1, max_length=4 * MAX_FILENAME_CHARS)
    mime_type: str = Field(min_length=1, max_length=255)
    purpose: FilePurpose
    expires_after: ExpiresAfter | None = None


class CompleteUploadBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    part_ids: list[str] = Field(min_length=1, max_length=MAX_PART_IDS)
    md5: str | None = Field(None, pattern=r"^[0-9a-fA-F]{32}$")


class InternalFile(BaseModel):
    """What other services learn of a file: who owns it, what it is for, where its bytes lie."""

    model_config = ConfigDict(extra="ignore")
    id: str
    org_id: str
    filename: str
    bytes: int
    purpose: str
    status: FileStatus
    sha256: str
    object_key: str
    created_at: int | None = None
