"""Two registry instances' appenders on one bus and one event log: one appends at a time, the other
takes over when it dies, and the log's ids per org stay 1..n with every event once, never interleaved
out of order. On the in-process bus and on RabbitMQ (a private vhost)."""
from __future__ import annotations

import asyncio
import contextlib
import json
from collections import defaultdict
from dataclasses import dataclass, field

import pytest

from services.registry.event_log import Entry, EventLog
from services.registry.event_log_appender import PREFETCH, Appender
from shared.bus.inprocess import InProcessBus
from shared.bus.inprocess_broker import InProcessBroker
from shared.bus.rabbitmq import RabbitBus
from shared.contracts import topology as t
from shared.contracts.messages import FileCreated
from shared.stores.documents import DocumentStore
from tests.fixtures.rabbit import private_vhost

ORGS = ("org-a", "org-b")
WAIT_SECONDS = 20.0  # a hang guard, never an assertion about speed


@dataclass
class Instance:
    """One registry instance's appender, and the ids it appended per org, in the order it did."""

    bus: object
    appender: Appender | None = None
    appended: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))

    def record(self, org_id: str, entries: list[Entry]) -> None:
        self.appended[org_id] += [entry.seq for entry in entries]


@pytest.fixture(params=["inprocess", "rabbitmq"])
async def make_bus(request):
    made = []
    broker = InProcessBroker()
    vhost = private_vhost("loraserve-event-log") if request.param == "rabbitmq" else contextlib.nullcontext()
    with vhost as url:
        async def make():
            topology = t.topology(["tiny"])
            bus = (InProcessBus(topology, broker=broker) if url is None
                   else RabbitBus(url, topology, reconnect_interval=0.2,
                                  connection_name=f"appender-{len(made)}"))
            await bus.start()
            made.append(bus)
            return bus
        yield make
        for bus in reversed(made):
            await bus.close()


class FreezingLog(EventLog):
    """An instance's log whose appends hang once `limit` events are in: the process froze, holding the
    events it had received unacked, and is about to die."""

    def __init__(self, database, limit: int) -> None:
        super().__init__(database, unique_event_ids=False)
        self.limit, self.taken = limit, 0
        self.frozen, self.thawed = asyncio.Event(), asyncio.Event()

    async def append_many(self, items, now=None):
        if self.taken + len(items) > self.limit:
            self.frozen.set()
            await self.thawed.wait()
            raise ConnectionError("this instance is gone")
        self.taken += len(items)
        return await super().append_many(items, now)


async def start_instance(make_bus, database, freeze_after: int | None = None) -> Instance:
    instance = Instance(await make_bus())
    event_log = (EventLog(database, unique_event_ids=False) if freeze_after is None
                 else FreezingLog(database, freeze_after))
    instance.appender = Appender(event_log, instance.record)
    await instance.bus.consume(t.EVENT_LOG_QUEUE, instance.appender.handle, prefetch=PREFETCH)
    return instance


async def publish(bus, first: int, count: int) -> list[str]:
    ids = []
    for n in range(first, first + count):
        org = ORGS[n % 2]
        ids.append((await bus.publish(FileCreated(org_id=org, file={"id": f"file-{n}"}), source="test")).id)
    return ids


async def until(condition) -> None:
    async def poll():
        while not condition():
            await asyncio.sleep(0.01)
    await asyncio.wait_for(poll(), WAIT_SECONDS)


async def logged(event_log: EventLog) -> dict[str, list[tuple[int, str]]]:
    """Each org's log as (id, CloudEvents id), in id order."""
    out = {}
    for org in ORGS:
        entries = await event_log.read(org, 0, None, 10_000)
        out[org] = [(e.seq, json.loads(e.event)["id"]) for e in entries]
    return out


def total(instance: Instance) -> int:
    return instance.appender.appended


async def test_one_appender_at_a_time_and_a_takeover_keeps_ids_whole_and_in_order(make_bus, tmp_path):
    database = DocumentStore(data_dir=tmp_path).database("registry")
    first = await start_instance(make_bus, database, freeze_after=150)
    second = await start_instance(make_bus, database)
    publisher = await make_bus()

    published = await publish(publisher, 0, 100)
    await until(lambda: total(first) == 100)
    assert total(second) == 0  # the second instance stands by

    published += await publish(publisher, 100, 200)
    await asyncio.wait_for(first.appender.log.frozen.wait(), WAIT_SECONDS)
    await first.bus.abort()  # the first instance dies mid-stream, holding unacked events
    await until(lambda: total(first) + total(second) >= 300)
    first.appender.log.thawed.set()
    log = EventLog(database)
    entries = await logged(log)
    assert sorted(cloud_id for org in ORGS for _, cloud_id in entries[org]) == sorted(published)  # each once
    for org in ORGS:
        seqs = [seq for seq, _ in entries[org]]
        assert seqs == list(range(1, len(seqs) + 1))
        by_first, by_second = first.appended[org], second.appended[org]
        assert by_first == sorted(by_first) and by_second == sorted(by_second)
        assert by_second and max(by_first) < min(by_second)  # never interleaved
    assert total(second) > 0


async def test_two_appenders_writing_at_once_never_give_an_id_twice_or_skip_one(tmp_path):
    database = DocumentStore(data_dir=tmp_path).database("registry")
    one, other = EventLog(database, unique_event_ids=False), EventLog(database, unique_event_ids=False)
    events = [FileCreated(org_id="org-a", file={"id": f"file-{n}"}).to_event("test") for n in range(200)]

    async def append(event_log: EventLog, batch_of: list) -> None:
        for start in range(0, len(batch_of), 10):
            await event_log.append_many([("org-a", e) for e in batch_of[start:start + 10]])

    # both take every event, in different orders: a takeover's overlap at its worst
    await asyncio.gather(append(one, events), append(other, list(reversed(events))))
    entries = (await logged(one))["org-a"]
    assert [seq for seq, _ in entries] == list(range(1, 201))
    assert sorted(cloud_id for _, cloud_id in entries) == sorted(e.id for e in events)
