"""Slots: least recently used out first, never an adapter a running sequence uses."""
from services.gpu_worker.engines.torch_engine.slots import SlotTable


def test_a_new_adapter_takes_a_free_slot_then_the_least_recently_used():
    table = SlotTable(2)
    first, second = table.place("a"), table.place("b")
    assert first.loaded and second.loaded and first.slot != second.slot
    assert table.place("a").loaded is False  # already there; now most recently used
    third = table.place("c")
    assert third.evicted == "b" and third.slot == second.slot
    assert table.slot_of("b") is None and table.slot_of("a") == first.slot


def test_pinned_adapters_are_never_evicted_and_a_full_table_says_so():
    table = SlotTable(2)
    table.place("a")
    table.pin("a")
    table.place("b")
    table.pin("b")
    assert table.place("c") is None
    table.unpin("a")
    placement = table.place("c")
    assert placement.evicted == "a"
