"""The document-store contract: the embedded store always, MongoDB too when LORASERVE_MONGO_URL is set."""
from __future__ import annotations

import asyncio
import datetime as dt

import pytest
from bson import Int64, ObjectId
from motor.motor_asyncio import AsyncIOMotorCollection, AsyncIOMotorDatabase
from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from shared.stores.documents import DocumentStore

NOW = dt.datetime(2026, 11, 27, 12, 30, 15, 123000, tzinfo=dt.UTC)


async def test_the_database_is_a_motor_database(document_store):
    store, name = document_store
    database = store.database(name)

    assert isinstance(database, AsyncIOMotorDatabase)
    assert isinstance(database.loras, AsyncIOMotorCollection)
    assert await store.ready() is True


async def test_a_unique_index_refuses_a_duplicate(document_store):
    store, name = document_store
    loras = store.database(name).loras
    await loras.create_index([("org_id", 1), ("name", 1)], unique=True)
    await loras.insert_one({"org_id": "org-a", "name": "pirate"})

    with pytest.raises(DuplicateKeyError):
        await loras.insert_one({"org_id": "org-a", "name": "pirate"})

    await loras.insert_one({"org_id": "org-b", "name": "pirate"})  # another org may use the name
    assert await loras.count_documents({"name": "pirate"}) == 2


async def test_a_conditional_update_is_a_compare_and_set(document_store):
    store, name = document_store
    records = store.database(name).validations
    await records.insert_one({"_id": "val-1", "status": "pending"})

    async def claim(worker: str):
        return await records.find_one_and_update({"_id": "val-1", "status": "pending"},
                                                 {"$set": {"status": "running", "worker": worker}},
                                                 return_document=ReturnDocument.AFTER)

    results = await asyncio.gather(claim("w1"), claim("w2"))

    winners = [result for result in results if result is not None]
    assert len(winners) == 1
    assert await records.find_one({"_id": "val-1"}) == {"_id": "val-1", "status": "running",
                                                        "worker": winners[0]["worker"]}


async def test_datetimes_come_back_in_utc(document_store):
    store, name = document_store
    files = store.database(name).files
    await files.insert_one({"_id": "file-1", "created_at": NOW})

    found = await files.find_one({"_id": "file-1"})

    assert found["created_at"] == NOW
    assert found["created_at"].utcoffset() == dt.timedelta(0)


async def test_the_embedded_store_keeps_data_and_indexes_across_a_restart(tmp_path):
    first = DocumentStore(data_dir=tmp_path)
    loras = first.database("registry").loras
    await loras.create_index([("org_id", 1), ("name", 1)], unique=True)
    oid = ObjectId()
    await loras.insert_many([
        {"_id": "l1", "org_id": "org-a", "name": "pirate", "created_at": NOW, "r": 8,
         "big": Int64(2**40), "ratio": 0.5, "validations": [{"model": "m", "status": "pending"}], "ref": oid},
        {"_id": "l2", "org_id": "org-a", "name": "doomed"},
    ])
    # flushed after each write, so that each one must be noticed on its own
    await first.flush()
    await loras.delete_one({"_id": "l2"})
    await first.flush()
    await loras.update_one({"_id": "l1"}, {"$set": {"validations.0.status": "succeeded"}})
    await first.database("registry").create_collection("empty_but_there")
    await first.close()

    second = DocumentStore(data_dir=tmp_path)
    reopened = second.database("registry").loras

    assert await reopened.find({}).to_list(None) == [
        {"_id": "l1", "org_id": "org-a", "name": "pirate", "created_at": NOW, "r": 8, "big": 2**40,
         "ratio": 0.5, "validations": [{"model": "m", "status": "succeeded"}], "ref": oid},
    ]
    with pytest.raises(DuplicateKeyError):
        await reopened.insert_one({"org_id": "org-a", "name": "pirate"})
    assert "empty_but_there" in await second.database("registry").list_collection_names()
    await second.close()


async def test_the_embedded_store_persists_without_a_clean_close(tmp_path):
    first = DocumentStore(data_dir=tmp_path)
    await first.database("files").files.insert_one({"_id": "file-1", "bytes": 3})

    # no close(), no wait: a write that returned is on disk already
    reopened = DocumentStore(data_dir=tmp_path)
    assert await reopened.database("files").files.find_one({"_id": "file-1"}) == {"_id": "file-1", "bytes": 3}


async def test_a_dropped_collection_stays_dropped_after_a_restart(tmp_path):
    first = DocumentStore(data_dir=tmp_path)
    database = first.database("registry")
    await database.scratch.insert_one({"_id": 1})
    await database.kept.insert_one({"_id": 2})
    await first.flush()
    await database.drop_collection("scratch")
    await first.close()

    second = DocumentStore(data_dir=tmp_path)

    assert await second.database("registry").list_collection_names() == ["kept"]
    await second.close()


async def test_each_database_is_its_own(tmp_path):
    store = DocumentStore(data_dir=tmp_path)
    await store.database("registry").things.insert_one({"_id": "r"})
    await store.database("file_ingest").things.insert_one({"_id": "f"})
    await store.close()

    reopened = DocumentStore(data_dir=tmp_path)

    assert await reopened.database("registry").things.distinct("_id") == ["r"]
    assert await reopened.database("file_ingest").things.distinct("_id") == ["f"]
