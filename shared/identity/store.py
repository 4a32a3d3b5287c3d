"""Identity: API key -> org. A key-hash file (embedded default, tests, a Kubernetes Secret)
or MongoDB's `identity` database; written only by `loraserve admin keys`. Both hash keys with the
pepper (see shared/identity/keys.py) and still accept the plain sha256 records of earlier releases.
"""
from __future__ import annotations

import abc
import asyncio
import json
import os
import time
from datetime import UTC, datetime
from pathlib import Path

from shared.identity.keys import (
    LEGACY,
    PEPPERED,
    KeyRecord,
    generate_key,
    legacy_digest,
    pepper_digest,
    pepper_id,
    valid_org_id,
)
from shared.logging import get_logger
from shared.quotas import OrgLimits

log = get_logger("identity")

CACHE_SECONDS = 5.0
MAX_KEYS_FILE_BYTES = 16 * 1024 * 1024


class IdentityStore(abc.ABC):
    @abc.abstractmethod
    async def org_for_key(self, api_key: str) -> str | None:
        """The org of an active key, or None."""

    async def key_id_for(self, api_key: str) -> str | None:
        """The id of an active key's record (not secret: usage reports name keys by it), or None."""
        return None

    @abc.abstractmethod
    async def create(self, org_id: str, api_key: str | None = None) -> tuple[KeyRecord, str]:
        """Store a new key's hash; returns the record and the key (shown once)."""

    @abc.abstractmethod
    async def list(self) -> list[KeyRecord]: ...

    @abc.abstractmethod
    async def revoke(self, key_id: str) -> bool: ...

    @abc.abstractmethod
    async def migrate(self) -> int:
        """Re-hash every plain-sha256 record under the pepper (no key needed); returns how many changed."""

    @abc.abstractmethod
    async def get_limits(self, org_id: str) -> OrgLimits:
        """The org's quota overrides (empty when it has none)."""

    @abc.abstractmethod
    async def set_limits(self, org_id: str, limits: OrgLimits) -> OrgLimits:
        """Replace the org's quota overrides; returns what is stored."""

    async def ready(self) -> bool:
        return True


def _check_org(org_id: str) -> None:
    if not valid_org_id(org_id):
        raise ValueError(f"org id {org_id!r} must be 1-64 characters of [a-z0-9-_]")


class FileIdentityStore(IdentityStore):
    """Key hashes in a JSON file, re-read when it changes so revocations apply without a restart."""

    def __init__(self, path: Path, *, pepper: str):
        self.path = Path(path)
        self._pepper = pepper
        self._peppered: dict[str, KeyRecord] = {}
        self._legacy: dict[str, KeyRecord] = {}
        self._limits: dict[str, OrgLimits] = {}
        self._loaded_mtime: float | None = None
        self._checked_at = 0.0

    def _read_raw(self) -> dict:
        if not self.path.exists():
            return {}
        if self.path.stat().st_size > MAX_KEYS_FILE_BYTES:
            raise ValueError(f"{self.path} is larger than {MAX_KEYS_FILE_BYTES} bytes")
        return json.loads(self.path.read_text() or "{}")

    def _read_file(self) -> tuple[str | None, list[KeyRecord]]:
        raw = self._read_raw()
        return raw.get("pepper_id"), [KeyRecord.model_validate(k) for k in raw.get("keys", [])]

    def _read_limits(self) -> dict[str, OrgLimits]:
        return {org: OrgLimits.model_validate(v) for org, v in self._read_raw().get("org_limits", {}).items()}

    def _read(self) -> list[KeyRecord]:
        return self._read_file()[1]

    def _write(self, records: list[KeyRecord], limits: dict[str, OrgLimits] | None = None) -> None:
        """Refuses to mix peppers in one file: keys hashed with another pepper would never match here."""
        made_with, existing = self._read_file()
        if made_with and made_with != pepper_id(self._pepper) and any(r.scheme == PEPPERED for r in existing):
            raise ValueError(f"{self.path} was hashed with another LORASERVE_KEY_PEPPER: set the one it was made "
                             "with (the one the services run with)")
        limits = self._read_limits() if limits is None else limits
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        document = {"pepper_id": pepper_id(self._pepper), "keys": [r.model_dump(mode="json") for r in records]}
        kept = {org: v.overrides() for org, v in sorted(limits.items()) if v.overrides()}
        if kept:
            document["org_limits"] = kept
        tmp.write_text(json.dumps(document, indent=2))
        os.chmod(tmp, 0o600)
        tmp.replace(self.path)
        self._loaded_mtime = None

    def _refresh(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and self._loaded_mtime is not None and now - self._checked_at < CACHE_SECONDS:
            return
        self._checked_at = now
        mtime = self.path.stat().st_mtime if self.path.exists() else 0.0
        if mtime != self._loaded_mtime:
            made_with, records = self._read_file()
            if made_with and made_with != pepper_id(self._pepper):
                log.error("the key file was hashed with another LORASERVE_KEY_PEPPER: its keys will not match",
                          path=str(self.path))
            self._peppered = {r.digest: r for r in records if r.scheme == PEPPERED}
            self._legacy = {r.digest: r for r in records if r.scheme == LEGACY}
            self._limits = self._read_limits()
            self._loaded_mtime = mtime

    def _find(self, api_key: str) -> KeyRecord | None:
        plain = legacy_digest(api_key)
        return self._peppered.get(pepper_digest(self._pepper, plain)) or self._legacy.get(plain)

    async def org_for_key(self, api_key: str) -> str | None:
        self._refresh()
        record = self._find(api_key)
        return record.org_id if record and record.active else None

    async def key_id_for(self, api_key: str) -> str | None:
        self._refresh()
        record = self._find(api_key)
        return record.id if record and record.active else None

    async def create(self, org_id: str, api_key: str | None = None) -> tuple[KeyRecord, str]:
        _check_org(org_id)
        api_key = api_key or generate_key()
        records = self._read()
        plain = legacy_digest(api_key)
        digests = {pepper_digest(self._pepper, plain): PEPPERED, plain: LEGACY}
        existing = next((r for r in records if digests.get(r.digest) == r.scheme), None)
        if existing:
            if existing.org_id != org_id:
                raise ValueError("that key already belongs to another org")
            return existing, api_key
        record = KeyRecord.new(org_id, api_key, self._pepper)
        self._write([*records, record])
        return record, api_key

    async def list(self) -> list[KeyRecord]:
        return self._read()

    async def revoke(self, key_id: str) -> bool:
        records = self._read()
        hit = False
        for record in records:
            if record.id == key_id and record.active:
                record.revoked_at = datetime.now(UTC)
                hit = True
        if hit:
            self._write(records)
        return hit

    async def migrate(self) -> int:
        records = self._read()
        migrated = [r.migrated(self._pepper) for r in records]
        self._write(migrated)
        return sum(1 for old, new in zip(records, migrated, strict=True) if old is not new)

    async def get_limits(self, org_id: str) -> OrgLimits:
        # a stat of the file on each call (every rate-limited request reads its org's limits): cheap, and an
        # `admin orgs set-limits` applies at once
        self._refresh(force=True)
        return self._limits.get(org_id, OrgLimits())

    async def set_limits(self, org_id: str, limits: OrgLimits) -> OrgLimits:
        _check_org(org_id)
        self._write(self._read(), {**self._read_limits(), org_id: limits})
        return limits


class MongoIdentityStore(IdentityStore):
    """Key hashes in MongoDB (`identity.api_keys`), cached for CACHE_SECONDS per key. Records of earlier
    releases carry `sha256` (plain) instead of `digest`; `migrate` rewrites them."""

    def __init__(self, database, *, pepper: str):
        self.keys = database["api_keys"]
        self.limits = database["org_limits"]
        self._limits_cache: dict[str, tuple[float, OrgLimits]] = {}
        self._pepper = pepper
        self._cache: dict[str, tuple[float, str | None]] = {}
        self._key_ids: dict[str, tuple[float, str | None]] = {}
        self._indexed = False

    async def _ensure_index(self) -> None:
        if self._indexed:
            return
        legacy = (await self.keys.index_information()).get("sha256_1")
        if legacy and not legacy.get("sparse"):
            # earlier releases made it unique over every record: new ones, which have no sha256, would collide
            await self.keys.drop_index("sha256_1")
        await self.keys.create_index("sha256", unique=True, sparse=True)
        await self.keys.create_index("digest", unique=True, sparse=True)
        self._indexed = True

    async def org_for_key(self, api_key: str) -> str | None:
        plain = legacy_digest(api_key)
        digest = pepper_digest(self._pepper, plain)
        cached = self._cache.get(digest)
        if cached and time.monotonic() - cached[0] < CACHE_SECONDS:
            return cached[1]
        doc = await self.keys.find_one({"$or": [{"digest": digest}, {"sha256": plain}], "revoked_at": None})
        org = doc["org_id"] if doc else None
        self._cache[digest] = (time.monotonic(), org)
        self._key_ids[digest] = (time.monotonic(), doc.get("id") if doc else None)
        return org

    async def key_id_for(self, api_key: str) -> str | None:
        digest = pepper_digest(self._pepper, legacy_digest(api_key))
        cached = self._key_ids.get(digest)
        if not cached or time.monotonic() - cached[0] >= CACHE_SECONDS:
            await self.org_for_key(api_key)  # not cached yet (or stale): one look-up fills both
            cached = self._key_ids.get(digest)
        return cached[1] if cached else None

    async def create(self, org_id: str, api_key: str | None = None) -> tuple[KeyRecord, str]:
        _check_org(org_id)
        await self._ensure_index()
        api_key = api_key or generate_key()
        record = KeyRecord.new(org_id, api_key, self._pepper)
        await self.keys.insert_one(record.model_dump())
        return record, api_key

    async def list(self) -> list[KeyRecord]:
        return [KeyRecord.model_validate(d) async for d in self.keys.find({}, {"_id": 0})]

    async def revoke(self, key_id: str) -> bool:
        result = await self.keys.update_one({"id": key_id, "revoked_at": None},
                                            {"$set": {"revoked_at": datetime.now(UTC)}})
        self._cache.clear()
        return result.modified_count == 1

    async def migrate(self) -> int:
        await self._ensure_index()
        changed = 0
        async for doc in self.keys.find({"sha256": {"$exists": True}}, {"_id": 0}):
            record = KeyRecord.model_validate(doc).migrated(self._pepper)
            result = await self.keys.update_one(
                {"id": record.id, "sha256": doc["sha256"]},
                {"$set": {"digest": record.digest, "scheme": record.scheme, "hint": record.hint},
                 "$unset": {"sha256": ""}})
            changed += result.modified_count
        self._cache.clear()
        return changed

    async def get_limits(self, org_id: str) -> OrgLimits:
        cached = self._limits_cache.get(org_id)
        if cached and time.monotonic() - cached[0] < CACHE_SECONDS:
            return cached[1]
        doc = await self.limits.find_one({"_id": org_id})
        limits = OrgLimits.model_validate(doc.get("limits", {})) if doc else OrgLimits()
        self._limits_cache[org_id] = (time.monotonic(), limits)
        return limits

    async def set_limits(self, org_id: str, limits: OrgLimits) -> OrgLimits:
        _check_org(org_id)
        await self.limits.update_one({"_id": org_id}, {"$set": {"limits": limits.overrides(),
                                                                "updated_at": datetime.now(UTC)}}, upsert=True)
        self._limits_cache.pop(org_id, None)
        return limits

    async def ready(self) -> bool:
        try:
            await asyncio.wait_for(self.keys.find_one({}), timeout=2)
            return True
        except Exception:  # noqa: BLE001 -- whatever stops MongoDB answering makes identity not ready
            return False
