"""API keys: generated once, shown once, stored only as keyed hashes.

A key is stored as HMAC-SHA256(pepper, sha256(key)): the pepper (LORASERVE_KEY_PEPPER) lives apart from the
hashes, so a leaked keys.json or identity database cannot be brute-forced, not even for short keys a person
chose. Hashing the sha256 digest rather than the key lets `loraserve admin keys migrate` upgrade the plain
sha256 records of earlier releases without knowing any key; until then those records are still accepted.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, Field, model_validator

KEY_PREFIX = "lsk-"
ORG_ID_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789-_"
HINT_CHARS = 4
PEPPERED = "hmac-sha256"
LEGACY = "sha256"


def legacy_digest(api_key: str) -> str:
    """What earlier releases stored: the key's unsalted sha256."""
    return hashlib.sha256(api_key.encode()).hexdigest()


def pepper_digest(pepper: str, sha256_hex: str) -> str:
    return hmac.new(pepper.encode(), sha256_hex.encode(), hashlib.sha256).hexdigest()


def key_digest(api_key: str, pepper: str) -> str:
    return pepper_digest(pepper, legacy_digest(api_key))


def pepper_id(pepper: str) -> str:
    """Names a pepper without revealing it, so a key file made with another pepper is caught, not just failing."""
    return hmac.new(pepper.encode(), b"loraserve key pepper id", hashlib.sha256).hexdigest()[:16]


def hint_of(api_key: str) -> str:
    """The last characters: enough to tell keys apart, too few to help guess one (the prefix is a constant)."""
    return api_key[-HINT_CHARS:] if len(api_key) >= 2 * HINT_CHARS else ""


def generate_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def valid_org_id(org_id: str) -> bool:
    """Org ids appear in routing keys (org.<id>.<type>): no dots, no wildcards."""
    return 1 <= len(org_id) <= 64 and all(c in ORG_ID_CHARS for c in org_id)


class KeyRecord(BaseModel):
    id: str = Field(default_factory=lambda: "key_" + secrets.token_hex(8))
    org_id: str
    digest: str  # hex; PEPPERED: hmac(pepper, sha256(key)), LEGACY: sha256(key)
    scheme: Literal["hmac-sha256", "sha256"] = PEPPERED
    hint: str  # PEPPERED: the key's last characters; LEGACY: its first 8 (removed by `migrate`)
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    revoked_at: datetime | None = None

    @model_validator(mode="before")
    @classmethod
    def _legacy_layout(cls, data):
        """Earlier releases wrote {"sha256": ..., "hint": first 8 characters} and no scheme."""
        if isinstance(data, dict) and "sha256" in data and "digest" not in data:
            data = {**data, "digest": data["sha256"], "scheme": LEGACY}
            data.pop("sha256")
        return data

    @classmethod
    def new(cls, org_id: str, api_key: str, pepper: str) -> KeyRecord:
        return cls(org_id=org_id, digest=key_digest(api_key, pepper), hint=hint_of(api_key))

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    @property
    def shown_hint(self) -> str:
        if self.scheme == LEGACY:
            return f"{self.hint}…"
        return f"…{self.hint}" if self.hint else "(no hint)"

    def migrated(self, pepper: str) -> KeyRecord:
        """The same key under the pepper, computed from the stored sha256 alone; the prefix hint is dropped."""
        if self.scheme == PEPPERED:
            return self
        return self.model_copy(update={"digest": pepper_digest(pepper, self.digest), "scheme": PEPPERED, "hint": ""})
