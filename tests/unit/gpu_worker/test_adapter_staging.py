"""Loads that never stall the batch: a cold adapter stages beside the running rows, then swaps in between steps;
a request that waited past the bound gets a slot although every slot serves running rows; pins hold."""
import threading

from services.gpu_worker.adapters.eviction import EvictionPolicy
from services.gpu_worker.adapters.residency import Residency
from services.gpu_worker.engines.torch_engine.engine import EngineObserver
from services.gpu_worker.engines.torch_engine.staging import Stager
from tests.unit.gpu_worker.test_engine_scheduling import make_engine, request, run


class GatedStager(Stager):
    """Stages only once the test opens the gate: the load lasts as long as the test wants."""

    def __init__(self, bank):
        super().__init__(bank)
        self.gate = threading.Event()
        self.started = threading.Event()

    def _stage(self, weights):
        self.started.set()
        self.gate.wait(timeout=60)
        return super()._stage(weights)


class CountingStager(Stager):
    def __init__(self, bank):
        super().__init__(bank)
        self.staged = threading.Event()

    def _stage(self, weights):
        result = super()._stage(weights)
        self.staged.set()
        return result


class Loads(EngineObserver):
    def __init__(self):
        self.looked_up, self.placed, self.waited = [], [], []

    def adapter_looked_up(self, resident):
        self.looked_up.append(resident)

    def adapter_placed(self, placement, seconds):
        self.placed.append(placement)

    def load_waited(self, seconds):
        self.waited.append(seconds)


def step_until(engine, done, limit=500):
    updates = []
    for _ in range(limit):
        if done(updates):
            return updates
        updates += engine.step()
    raise AssertionError("the engine did not get there")


def finals_of(updates):
    return {u.request_id: u for u in updates if u.finished}


def test_rows_keep_decoding_to_the_end_while_another_requests_adapter_is_loading(weights):
    engine, _ = make_engine(num_slots=2, max_batch=3)
    stager = GatedStager(engine.bank)
    engine.loader.stager = stager
    engine.submit(request("plain", "hello there", None, weights, max_tokens=30))
    engine.submit(request("other", "and you", None, weights, max_tokens=20))
    updates = engine.step() + engine.step()  # both running
    engine.submit(request("cold", "hello", "per_expert", weights, max_tokens=8))
    updates += step_until(engine, lambda ups: {"plain", "other"} <= set(finals_of(ups)))
    assert stager.started.is_set()
    assert not [u for u in updates if u.request_id == "cold"]  # still waiting for its adapter, nothing emitted
    assert finals_of(updates)["plain"].completion_tokens == 30 and finals_of(updates)["other"].completion_tokens == 20
    assert engine.slots.slot_of("per_expert") is None
    stager.gate.set()
    cold = finals_of(step_until(engine, lambda ups: "cold" in finals_of(ups)))["cold"]
    alone, _ = make_engine(num_slots=2, max_batch=3)
    expected = run(alone, [request("cold", "hello", "per_expert", weights, max_tokens=8)])["cold"]
    assert cold.error_code is None and cold.output_text == expected.output_text and cold.completion_tokens == 8


def test_requests_for_a_loading_adapter_wait_while_later_ones_are_admitted(weights):
    engine, _ = make_engine(num_slots=2, max_batch=3)
    stager = GatedStager(engine.bank)
    engine.loader.stager = stager
    engine.submit(request("warm", "hi", "peft_all_linear", weights, max_tokens=40))
    stager.gate.set()
    engine.step()
    stager.gate.clear()  # the next load is held
    engine.submit(request("cold", "hello", "per_expert", weights, max_tokens=5))
    engine.submit(request("later", "later one", "peft_all_linear", weights, max_tokens=5))
    updates = step_until(engine, lambda ups: "later" in finals_of(ups))
    assert "cold" not in finals_of(updates) and finals_of(updates)["later"].error_code is None
    stager.gate.set()
    updates = step_until(engine, lambda ups: "cold" in finals_of(ups))
    assert finals_of(updates)["cold"].completion_tokens == 5


def test_a_request_past_the_wait_bound_gets_a_slot_although_every_slot_serves_running_rows(weights):
    engine, _ = make_engine(num_slots=2, max_batch=4)
    engine.adopt(EvictionPolicy(), wait_bound=0.0)  # every wait is past the bound
    engine.submit(request("a1", "one", "peft_all_linear", weights, max_tokens=12))
    engine.submit(request("b1", "two", "explicit_linears", weights, max_tokens=60))
    step_until(engine, lambda _: len(engine.by_row) == 2)  # both slots serve running rows
    stager = CountingStager(engine.bank)
    engine.loader.stager = stager
    engine.submit(request("starved", "three", "per_expert", weights, max_tokens=4))
    updates = engine.step()
    assert stager.staged.wait(timeout=60)
    updates += engine.step()  # staged, but no slot is free: it names the least recently used adapter
    # more work for that adapter keeps arriving: without the bound it would hold its slot for ever
    engine.submit(request("a2", "four", "peft_all_linear", weights, max_tokens=12))
    updates += step_until(engine, lambda ups: "starved" in finals_of(ups))
    finals = finals_of(updates)
    assert finals["starved"].error_code is None and finals["starved"].completion_tokens == 4
    assert "a2" not in finals and "b1" not in finals  # a2 waited behind it; b1 (60 tokens) still runs
    updates = step_until(engine, lambda ups: {"a2", "b1"} <= set(finals_of(ups)))
    assert all(u.error_code is None for u in finals_of(updates).values())
    assert not engine.has_work()


def test_a_pinned_lora_keeps_its_slot_while_others_come_and_go(weights):
    loads = Loads()
    engine, _ = make_engine(num_slots=2, max_batch=1)
    engine.observer = engine.loader.observer = loads
    engine.adopt(EvictionPolicy(Residency(max_pins=1, pins=["lora-p"])))
    keyed = {"lora-p:c:w": weights["peft_all_linear"], "lora-x:c:w": weights["explicit_linears"],
             "lora-y:c:w": weights["per_expert"]}
    for index, key in enumerate(["lora-p:c:w", "lora-x:c:w", "lora-y:c:w", "lora-x:c:w", "lora-p:c:w"]):
        run(engine, [request(f"r{index}", "hi", key, keyed, max_tokens=2)])
    assert engine.slots.slot_of("lora-p:c:w") is not None
    assert loads.looked_up == [False, False, False, False, True]  # the pinned one came back without a load
    assert {p.evicted for p in loads.placed} - {None} == {"lora-x:c:w", "lora-y:c:w"}


def test_slot_loads_are_observed_with_their_wait_and_eviction(weights):
    loads = Loads()
    engine, _ = make_engine(num_slots=1, max_batch=1)
    engine.observer = engine.loader.observer = loads
    run(engine, [request("a", "hi", "peft_all_linear", weights, max_tokens=2)])
    run(engine, [request("b", "hi", "per_expert", weights, max_tokens=2)])
    run(engine, [request("c", "hi", "per_expert", weights, max_tokens=2)])
    assert loads.looked_up == [False, False, True]
    assert [(p.evicted, p.reason) for p in loads.placed] == [(None, None), ("peft_all_linear", "idle")]
    assert len(loads.waited) == 2 and all(w >= 0 for w in loads.waited)
