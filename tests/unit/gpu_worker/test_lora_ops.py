"""The three ways of adding per-token LoRA terms agree with plain float64 arithmetic."""
import pytest
import torch

from services.gpu_worker.engines.torch_engine.lora_ops import STRATEGIES, TokenPlan


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_each_token_gets_its_own_slots_term_and_tokens_without_adapter_nothing(strategy):
    generator = torch.Generator().manual_seed(0)
    slots, rank, in_f, out_f = 4, 3, 16, 12
    a = torch.randn(slots, rank, in_f, generator=generator)
    bt = torch.randn(slots, rank, out_f, generator=generator)
    x = torch.randn(7, in_f, generator=generator)
    base = torch.randn(7, out_f, generator=generator)
    token_slots = torch.tensor([2, -1, 0, 2, 3, -1, 1])
    y = base.clone()
    STRATEGIES[strategy](y, x, a, bt, TokenPlan(token_slots, slots))
    for n, slot in enumerate(token_slots.tolist()):
        if slot < 0:
            assert torch.equal(y[n], base[n])
        else:
            expected = base[n].double() + x[n].double() @ a[slot].double().T @ bt[slot].double()
            torch.testing.assert_close(y[n].double(), expected, atol=1e-4, rtol=1e-5)


def test_a_subset_plan_keeps_each_tokens_slot():
    plan = TokenPlan(torch.tensor([1, -1, 0, 1]), 2)
    subset = plan.subset(torch.tensor([0, 2]))
    assert subset.slots == {0, 1}
    assert subset.mask(2, torch.float32).tolist() == [[0, 0, 1, 1], [1, 1, 0, 0]]
