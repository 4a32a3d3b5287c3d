"""Quota overrides stored with the identity store: both backends, and the keys they share a store with."""
from __future__ import annotations

import json

from mongomock_motor import AsyncMongoMockClient

from shared.identity.store import FileIdentityStore, MongoIdentityStore
from shared.quotas import OrgLimits, Quotas, effective_limits
from shared.settings import Settings

PEPPER = "p" * 40


async def test_the_key_file_keeps_limits_and_keys_side_by_side(tmp_path):
    path = tmp_path / "keys.json"
    store = FileIdentityStore(path, pepper=PEPPER)
    _, key = await store.create("acme")
    await store.set_limits("acme", OrgLimits(loras=5, stored_bytes=10))
    await store.create("other")  # writing keys keeps the limits
    again = FileIdentityStore(path, pepper=PEPPER)
    assert await again.get_limits("acme") == OrgLimits(loras=5, stored_bytes=10)
    assert await again.get_limits("other") == OrgLimits()
    assert await again.org_for_key(key) == "acme"
    assert json.loads(path.read_text())["org_limits"] == {"acme": {"loras": 5, "stored_bytes": 10}}
    await again.set_limits("acme", OrgLimits())
    assert "org_limits" not in json.loads(path.read_text())


async def test_mongo_store_limits_and_effective_values():
    store = MongoIdentityStore(AsyncMongoMockClient()["identity"], pepper=PEPPER)
    assert await store.get_limits("acme") == OrgLimits()
    await store.set_limits("acme", OrgLimits(pending_uploads=3))
    assert await store.get_limits("acme") == OrgLimits(pending_uploads=3)
    settings = Settings(quota_loras=7)
    limits = await Quotas(settings, store).limits("acme")
    assert limits.pending_uploads == 3 and limits.loras == 7
    assert effective_limits(settings, OrgLimits()).pending_uploads == settings.quota_pending_uploads
