"""Eviction that fits the traffic, for the slots and the CPU tier: queued work and frequency outrank recency,
recency is the floor, operators' pins hold and are always fewer than the slots."""
import pytest

from services.gpu_worker.adapters.adapter_cache import AdapterCache
from services.gpu_worker.adapters.disk_cache import DiskCache
from services.gpu_worker.adapters.eviction import EvictionPolicy
from services.gpu_worker.adapters.residency import PinLimit, Residency, parse_pins
from services.gpu_worker.engines.torch_engine.slots import SlotTable
from tests.unit.gpu_worker.test_adapter_caches import CountingBlobs, stored_adapter


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def table(num_slots, residency=None, clock=None):
    return SlotTable(num_slots, EvictionPolicy(residency or Residency(num_slots - 1), half_life=60.0,
                                               clock=clock or Clock()))


def fill(slots, *keys, clock=None):
    for key in keys:
        slots.place(key)
        if clock:
            clock.now += 1


def test_an_adapter_with_queued_jobs_stays_although_it_is_the_least_recently_used():
    residency = Residency(2)
    slots = table(3, residency)
    fill(slots, "a:c:w", "b:c:w", "c:c:w")
    with residency.holding("a:c:w"):
        placement = slots.place("d:c:w")
    assert placement.evicted == "b:c:w" and placement.reason == "idle"
    assert slots.slot_of("a:c:w") is not None


def test_when_every_candidate_has_queued_jobs_the_least_valuable_goes():
    residency = Residency(1)
    slots = table(2, residency)
    fill(slots, "a:c:w", "b:c:w")
    with residency.holding("a:c:w"), residency.holding("b:c:w"):
        placement = slots.place("c:c:w")
    assert placement.evicted == "a:c:w" and placement.reason == "queued"


def test_an_adapter_used_every_second_outranks_a_one_off_used_since():
    clock = Clock()
    slots = table(2, clock=clock)
    for _ in range(10):
        slots.place("busy:c:w")
        clock.now += 1
    slots.place("once:c:w")  # the most recently used: plain LRU would evict busy
    clock.now += 1
    assert slots.place("new:c:w").evicted == "once:c:w"


def test_frequency_fades_so_old_popularity_does_not_hold_a_slot_for_ever():
    clock = Clock()
    slots = table(2, clock=clock)
    for _ in range(10):
        slots.place("was-busy:c:w")
    clock.now += 600  # ten half-lives: 10 uses are worth 0.01 now
    slots.place("recent:c:w")
    clock.now += 1
    assert slots.place("new:c:w").evicted == "was-busy:c:w"


def test_equal_scores_fall_back_to_least_recently_used():
    clock = Clock()
    slots = table(3, clock=clock)
    fill(slots, "a:c:w", "b:c:w", "c:c:w", clock=clock)
    clock.now += 600  # all faded alike, the oldest furthest
    assert slots.place("d:c:w").evicted == "a:c:w"


def test_a_pinned_lora_is_never_evicted_and_only_its_newest_version_holds_a_place():
    residency = Residency(1, pins=["p"])
    slots = table(2, residency)
    slots.place("p:c1:w1")
    for key in ("x:c:w", "y:c:w", "z:c:w"):
        assert slots.place(key).evicted != "p:c1:w1"
    assert slots.slot_of("p:c1:w1") is not None
    slots.place("p:c2:w2")  # the LoRA's files changed: the old version is no longer held
    assert slots.slot_of("p:c1:w1") is not None and slots.place("q:c:w").evicted == "p:c1:w1"


def test_pins_are_always_fewer_than_the_slots():
    with pytest.raises(PinLimit):
        Residency(max_pins=1, pins=["a", "b"])
    residency = Residency(max_pins=1, pins=["a"])
    with pytest.raises(PinLimit):
        residency.pin("b")
    assert residency.pins == ["a"] and residency.pin("a") is False
    assert residency.unpin("a") and residency.pin("b") and residency.pins == ["b"]
    assert parse_pins(" a, b,,a ") == ["a", "b"]


# -- the CPU tier --------------------------------------------------------------------------------
class Sized:
    nbytes = 100


def sized_reader(key, config_path, weights_path):
    return Sized()


@pytest.fixture
async def cpu_tier(tmp_path, adapter_dirs):
    blobs = CountingBlobs(tmp_path / "blobs")
    await blobs.start()
    refs = {name: await stored_adapter(blobs, adapter_dirs["per_expert"], name) for name in "abcdefp"}
    residency, clock, evictions = Residency(1), Clock(), []
    cache = AdapterCache(DiskCache(blobs, tmp_path / "disk", 1 << 30), sized_reader, max_bytes=300,
                         policy=EvictionPolicy(residency, half_life=60.0, clock=clock), on_evict=evictions.append)
    return cache, refs, residency, clock, evictions


def key(name):
    return f"{name}:{name}-c:{name}-w"


async def test_cpu_tier_keeps_a_frequent_adapter_through_a_burst_of_one_offs(cpu_tier):
    cache, refs, _, clock, _ = cpu_tier
    for _ in range(5):
        await cache.get(refs["a"])
        clock.now += 1
    for name in "bcdef":  # each used once, each newer than a
        await cache.get(refs[name])
        clock.now += 1
    assert key("a") in cache and cache.bytes_used <= 300
    assert [key(n) in cache for n in "bcdef"].count(True) == 2


async def test_cpu_tier_lets_a_one_off_pass_rather_than_push_out_steadier_adapters(cpu_tier):
    cache, refs, _, clock, evictions = cpu_tier
    for name in "abc":
        for _ in range(2):
            await cache.get(refs[name])
    clock.now += 1
    weights = await cache.get(refs["d"])  # its caller still gets it
    assert weights.nbytes == 100 and key("d") not in cache and evictions == ["not_admitted"]
    assert all(key(n) in cache for n in "abc")


async def test_cpu_tier_keeps_adapters_with_queued_jobs_and_pinned_ones(cpu_tier):
    cache, refs, residency, clock, evictions = cpu_tier
    residency.set_pins(["p"])
    for name in "pab":
        await cache.get(refs[name])
        clock.now += 1
    clock.now += 600
    with residency.holding(key("a")):
        await cache.get(refs["c"])
    assert key("p") in cache and key("a") in cache and key("b") not in cache
    assert evictions == ["idle"]
