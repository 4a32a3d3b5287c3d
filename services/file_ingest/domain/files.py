"""The File record: what is stored, what the public API shows, what other services may learn."""
from __future__ import annotations

from pydantic import BaseModel

from shared.contracts.files import FILE_PURPOSES, FileObject, FileStatus, InternalFile


class UnknownPurpose(ValueError):
    pass


def check_purpose(purpose: str | None) -> str:
    if purpose not in FILE_PURPOSES:
        raise UnknownPurpose(f"purpose must be one of {', '.join(FILE_PURPOSES)}")
    return purpose


def file_object_key(org_id: str, file_id: str) -> str:
    return f"orgs/{org_id}/files/{file_id}"


class FileRecord(BaseModel):
    id: str
    org_id: str
    filename: str
    bytes: int
    purpose: str
    sha256: str
    status: FileStatus = "processed"
    created_at: int
    object_key: str

    def public(self) -> FileObject:
        return FileObject(id=self.id, bytes=self.bytes, created_at=self.created_at, filename=self.filename,
                          purpose=self.purpose, status=self.status)

    def internal(self) -> InternalFile:
        return InternalFile(id=self.id, org_id=self.org_id, filename=self.filename, bytes=self.bytes,
                            purpose=self.purpose, status=self.status, sha256=self.sha256,
                            object_key=self.object_key, created_at=self.created_at)
