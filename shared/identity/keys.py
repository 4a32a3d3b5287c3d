"""API keys: generated once, shown once, stored only as sha256 hashes."""
from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime

from pydantic import BaseModel, Field

KEY_PREFIX = "lsk-"
ORG_ID_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789-_"


def hash_key(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()


def generate_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def valid_org_id(org_id: str) -> bool:
    """Org ids appear in routing keys (org.<id>.<type>): no dots, no wildcards."""
    return 1 <= len(org_id) <= 64 and all(c in ORG_ID_CHARS for c in org_id)


class KeyRecord(BaseModel):
    id: str = Field(default_factory=lambda: "key_" + secrets.token_hex(8))
    org_id: str
    sha256: str
    hint: str  # the first characters, so an operator can tell keys apart
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    revoked_at: datetime | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None
