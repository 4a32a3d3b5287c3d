"""Stored API keys cannot be brute-forced from the key file or database alone (issue 15, finding 8)."""
import hashlib
import json

import pytest
from mongomock_motor import AsyncMongoMockClient

from shared.identity.store import FileIdentityStore, MongoIdentityStore

PEPPER = "p" * 64
CHOSEN = "my-secret-key"  # a short key a person chose: its plain sha256 falls to a dictionary attack


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def legacy_record(key: str, org: str = "acme", key_id: str = "key_legacy") -> dict:
    """A record as earlier releases wrote it."""
    return {"id": key_id, "org_id": org, "sha256": sha256(key), "hint": key[:8],
            "created_at": "2025-01-01T00:00:00Z", "revoked_at": None}


async def test_the_file_holds_neither_the_plain_hash_nor_the_prefix(tmp_path):
    store = FileIdentityStore(tmp_path / "keys.json", pepper=PEPPER)
    record, _ = await store.create("acme", CHOSEN)
    text = (tmp_path / "keys.json").read_text()
    assert sha256(CHOSEN) not in text and CHOSEN[:5] not in text
    assert record.hint == CHOSEN[-4:] and record.shown_hint == "…-key"
    assert await store.org_for_key(CHOSEN) == "acme"


async def test_a_key_file_is_useless_under_another_pepper(tmp_path):
    await FileIdentityStore(tmp_path / "keys.json", pepper=PEPPER).create("acme", CHOSEN)
    other = FileIdentityStore(tmp_path / "keys.json", pepper="q" * 64)
    assert await other.org_for_key(CHOSEN) is None
    with pytest.raises(ValueError, match="another LORASERVE_KEY_PEPPER"):
        await other.create("acme")


async def test_legacy_records_still_work_and_migrate_without_the_key(tmp_path):
    path = tmp_path / "keys.json"
    path.write_text(json.dumps({"keys": [legacy_record(CHOSEN)]}))
    store = FileIdentityStore(path, pepper=PEPPER)
    assert await store.org_for_key(CHOSEN) == "acme"
    assert await store.migrate() == 1
    text = path.read_text()
    assert sha256(CHOSEN) not in text and CHOSEN[:8] not in text
    fresh = FileIdentityStore(path, pepper=PEPPER)
    assert await fresh.org_for_key(CHOSEN) == "acme" and await fresh.org_for_key("my-secret-kez") is None
    assert [r.id for r in await fresh.list()] == ["key_legacy"]
    assert await fresh.migrate() == 0


async def test_revoked_legacy_keys_stay_revoked(tmp_path):
    path = tmp_path / "keys.json"
    path.write_text(json.dumps({"keys": [legacy_record(CHOSEN)]}))
    store = FileIdentityStore(path, pepper=PEPPER)
    assert await store.revoke("key_legacy")
    await store.migrate()
    assert await FileIdentityStore(path, pepper=PEPPER).org_for_key(CHOSEN) is None


async def test_mongo_stores_peppered_hashes_accepts_and_migrates_legacy_ones():
    database = AsyncMongoMockClient()["identity"]
    await database["api_keys"].create_index("sha256", unique=True)  # what earlier releases made
    await database["api_keys"].insert_one(legacy_record(CHOSEN))
    store = MongoIdentityStore(database, pepper=PEPPER)
    _, first = await store.create("acme")
    _, second = await store.create("beta")  # two records without sha256 under the old unique index
    docs = [d async for d in database["api_keys"].find({}, {"_id": 0})]
    assert {sha256(first), sha256(second)}.isdisjoint({d.get("sha256") for d in docs})
    assert await store.org_for_key(CHOSEN) == "acme" and await store.org_for_key(second) == "beta"
    assert await store.migrate() == 1
    docs = [d async for d in database["api_keys"].find({}, {"_id": 0})]
    assert all("sha256" not in d for d in docs) and CHOSEN[:8] not in str(docs)
    fresh = MongoIdentityStore(database, pepper=PEPPER)
    assert await fresh.org_for_key(CHOSEN) == "acme" and await fresh.org_for_key(first) == "acme"
    assert await MongoIdentityStore(database, pepper="q" * 64).org_for_key(first) is None
