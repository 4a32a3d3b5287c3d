"""Identity: API key -> org. A key-hash file (embedded default, tests, a Kubernetes Secret)
or MongoDB's `identity` database; written only by `loraserve admin keys`.
"""
from __future__ import annotations

import abc
import asyncio
import json
import os
import time
from datetime import UTC, datetime
from pathlib import Path

from shared.identity.keys import KeyRecord, generate_key, hash_key, valid_org_id

CACHE_SECONDS = 5.0
MAX_KEYS_FILE_BYTES = 16 * 1024 * 1024


class IdentityStore(abc.ABC):
    @abc.abstractmethod
    async def org_for_key(self, api_key: str) -> str | None:
        """The org of an active key, or None."""

    @abc.abstractmethod
    async def create(self, org_id: str, api_key: str | None = None) -> tuple[KeyRecord, str]:
        """Store a new key's hash; returns the record and the key (shown once)."""

    @abc.abstractmethod
    async def list(self) -> list[KeyRecord]: ...

    @abc.abstractmethod
    async def revoke(self, key_id: str) -> bool: ...

    async def ready(self) -> bool:
        return True


class FileIdentityStore(IdentityStore):
    """Key hashes in a JSON file, re-read when it changes so revocations apply without a restart."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._by_hash: dict[str, KeyRecord] = {}
        self._loaded_mtime: float | None = None
        self._checked_at = 0.0

    def _read(self) -> list[KeyRecord]:
        if not self.path.exists():
            return []
        if self.path.stat().st_size > MAX_KEYS_FILE_BYTES:
            raise ValueError(f"{self.path} is larger than {MAX_KEYS_FILE_BYTES} bytes")
        raw = json.loads(self.path.read_text() or "{}")
        return [KeyRecord.model_validate(k) for k in raw.get("keys", [])]

    def _write(self, records: list[KeyRecord]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"keys": [r.model_dump(mode="json") for r in records]}, indent=2))
        os.chmod(tmp, 0o600)
        tmp.replace(self.path)
        self._loaded_mtime = None

    def _refresh(self) -> None:
        now = time.monotonic()
        if self._loaded_mtime is not None and now - self._checked_at < CACHE_SECONDS:
            return
        self._checked_at = now
        mtime = self.path.stat().st_mtime if self.path.exists() else 0.0
        if mtime != self._loaded_mtime:
            self._by_hash = {r.sha256: r for r in self._read()}
            self._loaded_mtime = mtime

    async def org_for_key(self, api_key: str) -> str | None:
        self._refresh()
        record = self._by_hash.get(hash_key(api_key))
        return record.org_id if record and record.active else None

    async def create(self, org_id: str, api_key: str | None = None) -> tuple[KeyRecord, str]:
        if not valid_org_id(org_id):
            raise ValueError(f"org id {org_id!r} must be 1-64 characters of [a-z0-9-_]")
        api_key = api_key or generate_key()
        records = self._read()
        digest = hash_key(api_key)
        existing = next((r for r in records if r.sha256 == digest), None)
        if existing:
            if existing.org_id != org_id:
                raise ValueError("that key already belongs to another org")
            return existing, api_key
        record = KeyRecord(org_id=org_id, sha256=digest, hint=api_key[:8])
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


class MongoIdentityStore(IdentityStore):
    """Key hashes in MongoDB (`identity.api_keys`), cached for CACHE_SECONDS per key."""

    def __init__(self, database):
        self.keys = database["api_keys"]
        self._cache: dict[str, tuple[float, str | None]] = {}
        self._indexed = False

    async def _ensure_index(self) -> None:
        if not self._indexed:
            await self.keys.create_index("sha256", unique=True)
            self._indexed = True

    async def org_for_key(self, api_key: str) -> str | None:
        digest = hash_key(api_key)
        cached = self._cache.get(digest)
        if cached and time.monotonic() - cached[0] < CACHE_SECONDS:
            return cached[1]
        doc = await self.keys.find_one({"sha256": digest, "revoked_at": None})
        org = doc["org_id"] if doc else None
        self._cache[digest] = (time.monotonic(), org)
        return org

    async def create(self, org_id: str, api_key: str | None = None) -> tuple[KeyRecord, str]:
        if not valid_org_id(org_id):
            raise ValueError(f"org id {org_id!r} must be 1-64 characters of [a-z0-9-_]")
        await self._ensure_index()
        api_key = api_key or generate_key()
        record = KeyRecord(org_id=org_id, sha256=hash_key(api_key), hint=api_key[:8])
        await self.keys.insert_one(record.model_dump())
        return record, api_key

    async def list(self) -> list[KeyRecord]:
        return [KeyRecord.model_validate(d) async for d in self.keys.find({}, {"_id": 0})]

    async def revoke(self, key_id: str) -> bool:
        result = await self.keys.update_one({"id": key_id, "revoked_at": None},
                                            {"$set": {"revoked_at": datetime.now(UTC)}})
        self._cache.clear()
        return result.modified_count == 1

    async def ready(self) -> bool:
        try:
            await asyncio.wait_for(self.keys.find_one({}), timeout=2)
            return True
        except Exception:  # noqa: BLE001 -- whatever stops MongoDB answering makes identity not ready
            return False
