"""Workers' seats in a model's affinity ring, on both buses: a starting worker takes the lowest free seat (a dead
worker's first), a stopping one unbinds before it drains, and the ring sends its adapters to the others."""

from __future__ import annotations

import asyncio

import pytest

from services.gpu_worker.affinity import Ring, SeatOptions, route_of, take_seat, unbind_orphans
from shared.bus.base import QueueInUse
from shared.contracts import topology as t
from tests.fixtures.polling import eventually
from tests.integration.bus.conftest import SLUGS, Inbox
from tests.integration.bus.messages import SOURCE, inference_job
from tests.integration.bus.test_affinity import adapter_job

SLUG = SLUGS[0]
OPTIONS = SeatOptions(wait_ms=30_000, max_ready=100)


@pytest.fixture
async def seats(harness):
    """Deletes the seats a test took (RabbitMQ's vhost lives for the whole run)."""
    yield
    await harness.close_all()
    for number in range(4):
        await harness.delete_queue(t.affinity_queue(SLUG, number, wait_ms=1, max_ready=1).name)


async def test_workers_take_the_lowest_free_seat_and_a_dead_workers_seat_goes_to_the_next(harness, seats):
    buses = [await harness.bus() for _ in range(3)]
    taken = [await take_seat(bus, SLUG, Inbox(), prefetch=4, options=OPTIONS) for bus in buses]
    assert [seat.queue.name.rsplit(".", 1)[1] for seat in taken] == ["0", "1", "2"]
    assert await buses[0].consumers(taken[1].queue.name) == 1
    assert await buses[0].consumers(f"{t.inference_queue(SLUG)}.hot.63") is None  # never declared

    await harness.kill(buses[1])
    replacement = await take_seat(await harness.bus(), SLUG, Inbox(), prefetch=4, options=OPTIONS)
    assert replacement.queue.name == taken[1].queue.name


async def test_a_worker_that_leaves_gets_no_new_jobs_and_its_adapters_go_to_the_others(harness, seats):
    publisher = await harness.bus()
    leaving_inbox, staying_inbox = Inbox(), Inbox()
    leaving = await take_seat(await harness.bus(), SLUG, leaving_inbox, prefetch=4, options=OPTIONS)
    await take_seat(await harness.bus(), SLUG, staying_inbox, prefetch=4, options=OPTIONS)
    await leaving.leave(publisher)

    for n in range(20):
        await publisher.publish(adapter_job(f"resp_{n}", f"lora-{n}"), source=SOURCE)
    await staying_inbox.take(20)
    assert leaving_inbox.deliveries == []
    assert await publisher.consumers(leaving.queue.name) == 0


async def test_a_dead_workers_seat_that_nobody_took_is_unbound_at_the_second_check(harness, seats):
    publisher = await harness.bus()
    live_inbox = Inbox()
    live = await take_seat(await harness.bus(), SLUG, live_inbox, prefetch=20, options=OPTIONS)
    dead_bus = await harness.bus()
    dead = await take_seat(dead_bus, SLUG, Inbox(), prefetch=20, options=OPTIONS)
    await harness.kill(dead_bus)

    idle = await unbind_orphans(publisher, SLUG, OPTIONS, own=live.queue.name, idle_before=set())
    assert idle == {1}  # seen idle once: still bound (its worker may be reconnecting)
    idle = await unbind_orphans(publisher, SLUG, OPTIONS, own=live.queue.name, idle_before=idle)
    for n in range(20):  # half of them hashed to the dead seat, where they would wait 30 s
        await publisher.publish(adapter_job(f"resp_{n}", f"lora-{n}"), source=SOURCE)
    await live_inbox.take(20)
    assert all(d.queue == live.queue.name and d.death is None for d in live_inbox.deliveries)

    await take_seat(await harness.bus(), SLUG, Inbox(), prefetch=4, options=OPTIONS)  # takes and binds seat 1
    assert await publisher.consumers(dead.queue.name) == 1


async def test_each_job_is_counted_by_the_way_it_came(harness, seats):
    publisher = await harness.bus()
    seat_inbox, shared_inbox = Inbox(), Inbox()
    await take_seat(await harness.bus(), SLUG, seat_inbox, prefetch=4, options=OPTIONS)
    await publisher.consume(t.inference_queue(SLUG), shared_inbox, prefetch=4)
    await publisher.publish(adapter_job("resp_seat", "lora-1"), source=SOURCE)
    await publisher.publish(inference_job("resp_base", SLUG), source=SOURCE)
    shared = t.inference_queue(SLUG)
    assert route_of(await seat_inbox.next(), shared) == "seat"
    assert route_of(await shared_inbox.next(), shared) == "shared"


async def test_workers_starting_together_never_share_a_seat(harness, seats):
    buses = [await harness.bus() for _ in range(3)]
    taken = await asyncio.gather(*(take_seat(bus, SLUG, Inbox(), prefetch=4, options=OPTIONS) for bus in buses))
    assert sorted(seat.queue.name for seat in taken) == [
        t.affinity_queue(SLUG, n, wait_ms=1, max_ready=1).name for n in range(3)]
    for seat in taken:
        assert await buses[0].consumers(seat.queue.name) == 1

    with pytest.raises(QueueInUse):  # and the bus that was refused goes on working
        await buses[1].consume(taken[0].queue, Inbox(), exclusive=True)
    inbox = Inbox()
    await buses[1].consume(t.inference_queue(SLUG), inbox)
    await buses[1].publish(inference_job("resp_after", SLUG), source=SOURCE)
    assert (await inbox.next()).event.data["response_id"] == "resp_after"


async def test_a_seat_made_with_other_settings_is_renewed_without_losing_what_waits_in_it(harness, seats):
    publisher = await harness.bus()
    old = SeatOptions(wait_ms=200, max_ready=100)
    old_bus = await harness.bus()
    await take_seat(old_bus, SLUG, Inbox(), prefetch=1, options=old)
    await harness.kill(old_bus)  # its seat stays, bound, with a job waiting in it
    await publisher.publish(adapter_job("resp_waiting", "lora-1"), source=SOURCE)
    shared = Inbox()
    await publisher.consume(t.inference_queue(SLUG), shared)

    new_inbox = Inbox()
    seat = await take_seat(await harness.bus(), SLUG, new_inbox, prefetch=4,
                           options=SeatOptions(wait_ms=30_000, max_ready=8))
    assert seat.queue.name.endswith(".hot.0") and seat.queue.max_ready == 8
    assert (await shared.next()).event.data["response_id"] == "resp_waiting"  # moved on, not deleted with it
    await publisher.publish(adapter_job("resp_new", "lora-1"), source=SOURCE)
    assert (await new_inbox.next()).event.data["response_id"] == "resp_new"


async def test_after_a_reconnect_a_worker_takes_a_seat_again_and_its_bus_keeps_working(harness, seats):
    publisher = await harness.bus()
    first_inbox, newcomer_inbox, shared = Inbox(), Inbox(), Inbox()
    first_bus = await harness.bus()
    ring = Ring(first_bus, SLUG, first_inbox, prefetch=4, options=OPTIONS)
    await ring.join()
    await first_bus.consume(t.inference_queue(SLUG), shared)
    await harness.drop_connections()
    await take_seat(await harness.bus(), SLUG, newcomer_inbox, prefetch=4, options=OPTIONS)  # its old seat, maybe
    await eventually(lambda: ring.seat.subscription.lost)
    await eventually_async(first_bus.ready)

    await ring.check()  # takes a seat again: never the newcomer's; the shared queue was restored meanwhile
    assert not ring.seat.subscription.lost
    assert await publisher.consumers(ring.seat.queue.name) == 1
    await publisher.publish(inference_job("resp_base", SLUG), source=SOURCE)
    assert (await shared.next()).event.data["response_id"] == "resp_base"
    for n in range(20):
        await publisher.publish(adapter_job(f"resp_{n}", f"lora-{n}"), source=SOURCE)
    await eventually(lambda: len(first_inbox.deliveries) + len(newcomer_inbox.deliveries) == 20)
    assert first_inbox.deliveries and newcomer_inbox.deliveries  # both seats bound, each with its worker


async def eventually_async(check) -> None:
    for _ in range(500):
        if await check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("not ready in time")
