"""The ways of adding per-token LoRA terms agree with plain float64 arithmetic, whatever rows use which entries."""
import pytest
import torch

from services.gpu_worker.engines.torch_engine.lora_ops import NO_ADAPTER, STRATEGIES, plan_forward

RANK, IN, OUT, ENTRIES = 8, 16, 12, 8
# row -> slot (NO_ADAPTER: none); slot s holds entry ENTRY_OF[s]
LAYOUTS = {
    "rows_in_entry_order": [0, 1, 2, 3],
    "some_rows_in_entry_order": [NO_ADAPTER, 1, 2, 3, NO_ADAPTER],
    "permuted": [3, 0, 2, 1],
    "holes_and_no_adapter": [5, NO_ADAPTER, 0, 3, NO_ADAPTER, 1],
    "rows_sharing_an_entry": [2, NO_ADAPTER, 0, 2, 3, 2, 1],
    "far_apart_entries": [7, 0],
    "one_entry_many_rows_uneven": [4, 4, 4, 4, 4, 1],
}
ENTRY_OF = {slot: slot for slot in range(ENTRIES)}


def expected(base, x, a_t, bt, token_entries):
    out = base.double().clone()
    for n, entry in enumerate(token_entries):
        if entry != NO_ADAPTER:
            out[n] += x[n].double() @ a_t[entry].double() @ bt[entry].double()
    return out


@pytest.mark.parametrize("steps", [1, 3])
@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_each_token_gets_its_own_entrys_term_and_tokens_without_adapter_nothing(strategy, layout, steps):
    generator = torch.Generator().manual_seed(0)
    a_t = torch.randn(ENTRIES, IN, RANK, generator=generator)
    bt = torch.randn(ENTRIES, RANK, OUT, generator=generator)
    slots = LAYOUTS[layout]
    tokens = len(slots) * steps
    x = torch.randn(tokens, IN, generator=generator)
    base = torch.randn(tokens, OUT, generator=generator)
    plan = plan_forward(slots, steps, {RANK: ENTRY_OF}, torch.device("cpu"))
    y = base.clone()
    STRATEGIES[strategy](y.view(len(slots), steps, OUT), x.view(len(slots), steps, IN), a_t, bt, plan.buckets[RANK])
    token_entries = [ENTRY_OF.get(slot, NO_ADAPTER) for slot in slots for _ in range(steps)]
    torch.testing.assert_close(y.double(), expected(base, x, a_t, bt, token_entries), atol=1e-4, rtol=1e-5)
    for n, entry in enumerate(token_entries):
        if entry == NO_ADAPTER:
            assert torch.equal(y[n], base[n])


def test_a_plan_puts_each_row_in_the_bucket_its_slot_holds_an_entry_of():
    plan = plan_forward([2, NO_ADAPTER, 0, 1], 1, {8: {0: 0, 2: 1}, 64: {1: 0}}, torch.device("cpu"))
    assert plan.slots == {0, 1, 2}
    assert (plan.buckets[8].rows, plan.buckets[8].entries) == ([0, 2], [1, 0])
    assert (plan.buckets[64].rows, plan.buckets[64].entries) == ([3], [0])
    assert plan.buckets[8].entry_per_token.tolist() == [1, NO_ADAPTER, 0, NO_ADAPTER]


def test_rows_without_adapters_need_no_plan():
    assert plan_forward([NO_ADAPTER, NO_ADAPTER], 1, {8: {0: 0}}, torch.device("cpu")) is None
