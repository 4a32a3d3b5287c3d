"""A request knows which API key made it (usage reports name the key by its record id, never the key)."""
from mongomock_motor import AsyncMongoMockClient

from shared.identity.store import FileIdentityStore, MongoIdentityStore

PEPPER = "p" * 64


async def _names_each_key(store) -> None:
    first, first_key = await store.create("acme")
    second, second_key = await store.create("acme")
    assert await store.key_id_for(first_key) == first.id and await store.key_id_for(second_key) == second.id
    assert first.id != second.id and await store.key_id_for("not-a-key") is None


async def test_file_store_names_the_key_record(tmp_path):
    await _names_each_key(FileIdentityStore(tmp_path / "keys.json", pepper=PEPPER))


async def test_mongo_store_names_the_key_record():
    database = AsyncMongoMockClient()["identity"]
    await _names_each_key(MongoIdentityStore(database, pepper=PEPPER))
