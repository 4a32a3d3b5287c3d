"""The Upload record and its rules: when parts may be added, which part ids a completion may name."""
from __future__ import annotations

from collections import Counter

from pydantic import BaseModel, Field

from shared.contracts.files import UploadObject, UploadStatus


class UploadNotPending(Exception):
    """The upload is completed, cancelled or expired: it takes no more parts or completions."""


class CompletionRefused(ValueError):
    """The completion request is wrong; `problems` lists every reason at once."""

    def __init__(self, problems: list[str], param: str):
        super().__init__("; ".join(problems))
        self.problems = problems
        self.param = param


class PartRecord(BaseModel):
    id: str
    bytes: int
    object_key: str
    created_at: int


class UploadRecord(BaseModel):
    id: str
    org_id: str
    filename: str
    bytes: int
    mime_type: str
    purpose: str
    status: UploadStatus = "pending"
    created_at: int
    expires_at: int
    parts: list[PartRecord] = Field(default_factory=list)
    parts_bytes: int = 0  # what the parts hold together; never more than `bytes`
    file_id: str | None = None
    # set while a completion runs, so parts, cancels and the sweeper keep off
    completing_until: int | None = None
    # the File id a running completion stores: a retry after a crash finds the File by it
    completing_file_id: str | None = None

    def effective_status(self, now: int) -> UploadStatus:
        if self.status == "pending" and self.expires_at <= now:
            return "expired"
        return self.status

    def public(self, now: int, file: dict | None = None) -> UploadObject:
        return UploadObject(id=self.id, bytes=self.bytes, created_at=self.created_at, expires_at=self.expires_at,
                            filename=self.filename, purpose=self.purpose, status=self.effective_status(now),
                            file=file)


def upload_prefix(org_id: str, upload_id: str) -> str:
    return f"orgs/{org_id}/uploads/{upload_id}"


def part_object_key(org_id: str, upload_id: str, part_id: str) -> str:
    return f"{upload_prefix(org_id, upload_id)}/parts/{part_id}"


def check_accepts_work(upload: UploadRecord, now: int) -> None:
    status = upload.effective_status(now)
    if status != "pending":
        raise UploadNotPending(f"Upload {upload.id} is {status}")
    if upload.completing_until is not None and upload.completing_until > now:
        raise UploadNotPending(f"Upload {upload.id} is being completed")


def select_parts(upload: UploadRecord, part_ids: list[str]) -> list[PartRecord]:
    """The named parts in the order given, or every problem with the list at once."""
    by_id = {part.id: part for part in upload.parts}
    problems: list[str] = []
    unknown = [pid for pid in part_ids if pid not in by_id]
    if unknown:
        problems.append(f"part ids not in upload {upload.id}: {', '.join(unknown[:10])}"
                        + (f" and {len(unknown) - 10} more" if len(unknown) > 10 else ""))
    repeated = sorted(pid for pid, count in Counter(part_ids).items() if count > 1)
    if repeated:
        problems.append(f"part ids named more than once: {', '.join(repeated[:10])}")
    if problems:
        raise CompletionRefused(problems, param="part_ids")
    parts = [by_id[pid] for pid in part_ids]
    total = sum(part.bytes for part in parts)
    if total != upload.bytes:
        raise CompletionRefused(
            [f"the parts hold {total} bytes but the upload was created with bytes={upload.bytes}"],
            param="part_ids")
    return parts
