"""The embedded store's journal: a write that returned survives SIGKILL, a torn tail is dropped,
compaction keeps every document, and what is on disk is its owner's alone."""
from __future__ import annotations

import os
import re
import signal
import stat
import subprocess
import sys
from pathlib import Path

from bson import json_util

from shared.stores.document_snapshots import JSON_OPTIONS
from shared.stores.documents import DocumentStore

REPO = Path(__file__).resolve().parents[3]
ACKED_BEFORE_KILL = 300
ACK = re.compile(r"^\d+ \d+$")  # the child's log lines share its stdout


def _run_until_killed(root: Path, writers: int) -> list[tuple[int, int]]:
    """Start the writing child, SIGKILL it once enough writes returned; every write it acknowledged."""
    child = subprocess.Popen([sys.executable, "-m", "tests.integration.stores.journal_child", str(root), str(writers)],
                             cwd=REPO, stdout=subprocess.PIPE, text=True)
    acked: list[tuple[int, int]] = []
    try:
        while len(acked) < ACKED_BEFORE_KILL:
            line = child.stdout.readline()
            assert line, "the child stopped writing"
            if ACK.match(line):
                acked.append(tuple(int(field) for field in line.split()))
        child.send_signal(signal.SIGKILL)
        # what it printed before the kill was acknowledged too
        acked.extend(tuple(int(field) for field in line.split()) for line in child.stdout.read().splitlines()
                     if ACK.match(line))
    finally:
        child.kill()
        child.wait()
        child.stdout.close()
    return acked


async def test_every_write_that_returned_survives_sigkill(tmp_path):
    acked = _run_until_killed(tmp_path, writers=4)

    store = DocumentStore(data_dir=tmp_path)
    database = store.database("crash")
    things = {doc["_id"]: doc async for doc in database.things.find({})}
    lost = [(w, i) for w, i in acked
            if (f"t{w}-{i}" in things) == (i % 3 == 0) or (i % 3 and things[f"t{w}-{i}"]["hits"] != 1)]
    counter = await database.counters.find_one({"_id": "c"})

    assert lost == []
    assert counter["v"] >= len(acked)
    # the unique index came back as well
    assert any(index["key"] == {"n": 1} for index in (await database.things.index_information()).values()) \
        or "n_1" in await database.things.index_information()


async def test_a_torn_last_record_is_dropped_and_writing_goes_on(tmp_path):
    first = DocumentStore(data_dir=tmp_path)
    things = first.database("db").things
    await things.insert_one({"_id": "a", "v": 1})
    await things.update_one({"_id": "a"}, {"$set": {"v": 2}})
    journal = tmp_path / "documents" / "db" / "things.journal"
    # a crash in the middle of the next append
    journal.write_bytes(journal.read_bytes() + b'0badc0de {"s": 3, "op": "update_one", "args": {"filter": {"_id"')

    second = DocumentStore(data_dir=tmp_path)
    reopened = second.database("db").things
    assert await reopened.find_one({"_id": "a"}) == {"_id": "a", "v": 2}
    await reopened.insert_one({"_id": "b"})

    third = DocumentStore(data_dir=tmp_path)
    assert [doc["_id"] async for doc in third.database("db").things.find({})] == ["a", "b"]


async def test_compaction_keeps_every_document_and_empties_the_journal(tmp_path):
    first = DocumentStore(data_dir=tmp_path, compact_records=4)
    things = first.database("db").things
    for index in range(10):
        await things.insert_one({"_id": index, "items": []})
        await things.update_one({"_id": index}, {"$push": {"items": index}})
    await things.delete_one({"_id": 0})
    journal = tmp_path / "documents" / "db" / "things.journal"
    assert len(journal.read_bytes().splitlines()) < 4

    second = DocumentStore(data_dir=tmp_path)
    assert await second.database("db").things.find({}).to_list(None) == [
        {"_id": index, "items": [index]} for index in range(1, 10)]


async def test_records_already_in_the_snapshot_are_not_applied_twice(tmp_path):
    first = DocumentStore(data_dir=tmp_path)
    counters = first.database("db").counters
    await counters.insert_one({"_id": "c", "v": 0})
    for _ in range(5):
        await counters.update_one({"_id": "c"}, {"$inc": {"v": 1}})
    journal = tmp_path / "documents" / "db" / "counters.journal"
    records = journal.read_bytes()
    await first.flush()
    journal.write_bytes(records)  # a crash after the snapshot was replaced, before the journal was emptied

    second = DocumentStore(data_dir=tmp_path)
    assert await second.database("db").counters.find_one({"_id": "c"}) == {"_id": "c", "v": 5}


async def test_writes_the_journal_cannot_replay_are_snapshotted_before_they_return(tmp_path):
    first = DocumentStore(data_dir=tmp_path)
    things = first.database("db").things
    # an upsert that makes up its own _id would get another one on replay
    await things.update_one({"name": "x"}, {"$set": {"v": 1}}, upsert=True)
    made = await things.find_one({"name": "x"})

    second = DocumentStore(data_dir=tmp_path)
    assert await second.database("db").things.find_one({"name": "x"}) == made
    snapshot = json_util.loads((tmp_path / "documents" / "db" / "things.json").read_text(),
                               json_options=JSON_OPTIONS)
    assert snapshot["documents"][0]["_id"] == made["_id"]


async def test_a_write_that_changed_nothing_costs_no_journal_record(tmp_path):
    store = DocumentStore(data_dir=tmp_path)
    things = store.database("db").things
    await things.insert_one({"_id": "a", "status": "done"})
    journal = tmp_path / "documents" / "db" / "things.journal"
    size = journal.stat().st_size

    for _ in range(20):  # a sweeper polling for work
        await things.find_one_and_update({"status": "pending"}, {"$set": {"status": "running"}})
        await things.update_one({"_id": "missing"}, {"$set": {"v": 1}})

    assert journal.stat().st_size == size


async def test_snapshots_journals_and_their_directories_are_owner_only(tmp_path):
    os.umask(0o022)
    store = DocumentStore(data_dir=tmp_path)
    things = store.database("db").things
    await things.insert_one({"_id": "a"})
    await store.close()

    documents = tmp_path / "documents"
    for path in [documents, *documents.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), f"{path} is {oct(mode)}"
    assert sorted(p.name for p in (documents / "db").iterdir()) == ["things.journal", "things.json"]
