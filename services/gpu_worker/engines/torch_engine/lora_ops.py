"""Adding each token's own adapter's LoRA term to a batched matmul's output (Punica/S-LoRA's idea).

`y[n] += x[n] @ A[s_n]^T @ Bt[s_n]` for every token n whose slot s_n >= 0; tokens without an
adapter (slot -1) get nothing added. Stacked factors: A `[S, R, in]`, Bt `[S, R, out]` (scaling
folded into Bt, ranks below R zero-padded). Three ways, measured in tests/bench/bench_engine.py:

- masked: one GEMM of the tokens against every slot's A at once, a 0/1 mask keeps each
  token's own slot's R columns, one GEMM (fused with the add) against every slot's Bt. No
  weight gathering; cost grows with the number of slots, not with the number of tokens.
- gathered: copy each token's slot's A and Bt (`A[s_n]`) and run two batched matmuls.
- grouped: one pair of small matmuls per distinct slot in the batch.
"""
from __future__ import annotations

from collections.abc import Callable

import torch

NO_ADAPTER = -1


class TokenPlan:
    """Which slot each token of the current forward uses, with what the strategies derive from it."""

    def __init__(self, token_slots: torch.Tensor, num_slots: int, parent: TokenPlan | None = None,
                 parent_index: torch.Tensor | None = None):
        self.token_slots = token_slots
        self.num_slots = num_slots
        self.slots = frozenset(token_slots.unique().tolist()) - {NO_ADAPTER}
        self._parent, self._parent_index = parent, parent_index
        self._masks: dict[tuple[int, torch.dtype], torch.Tensor] = {}
        self._rows: torch.Tensor | None = None
        self._groups: list[tuple[int, torch.Tensor]] | None = None
        self._all_have_adapters: bool | None = None

    @property
    def all_have_adapters(self) -> bool:
        if self._all_have_adapters is None:  # asked once per wrapped module per forward: computed once
            self._all_have_adapters = bool((self.token_slots >= 0).all())
        return self._all_have_adapters

    def mask(self, rank: int, dtype: torch.dtype) -> torch.Tensor:
        """[N, S·R] with 1 where column belongs to the token's own slot."""
        key = (rank, dtype)
        if key not in self._masks:
            if self._parent is not None:
                self._masks[key] = self._parent.mask(rank, dtype).index_select(0, self._parent_index)
            else:
                column_slot = torch.arange(self.num_slots, device=self.token_slots.device).repeat_interleave(rank)
                self._masks[key] = (self.token_slots[:, None] == column_slot[None, :]).to(dtype)
        return self._masks[key]

    def rows(self) -> torch.Tensor:
        if self._rows is None:
            self._rows = (self.token_slots >= 0).nonzero().squeeze(1)
        return self._rows

    def groups(self) -> list[tuple[int, torch.Tensor]]:
        if self._groups is None:
            self._groups = [(slot, (self.token_slots == slot).nonzero().squeeze(1)) for slot in sorted(self.slots)]
        return self._groups

    def subset(self, index: torch.Tensor) -> TokenPlan:
        return TokenPlan(self.token_slots.index_select(0, index), self.num_slots, self, index)


def add_masked(y: torch.Tensor, x: torch.Tensor, a: torch.Tensor, bt: torch.Tensor, plan: TokenPlan) -> None:
    slots, rank, _ = a.shape
    shrunk = x @ a.reshape(slots * rank, -1).T
    shrunk.mul_(plan.mask(rank, shrunk.dtype))
    y.addmm_(shrunk, bt.reshape(slots * rank, -1))


def add_gathered(y: torch.Tensor, x: torch.Tensor, a: torch.Tensor, bt: torch.Tensor, plan: TokenPlan) -> None:
    if plan.all_have_adapters:
        slots = plan.token_slots
        shrunk = torch.bmm(x.unsqueeze(1), a.index_select(0, slots).transpose(1, 2))
        y.add_(torch.bmm(shrunk, bt.index_select(0, slots)).squeeze(1))
        return
    rows = plan.rows()
    slots = plan.token_slots.index_select(0, rows)
    shrunk = torch.bmm(x.index_select(0, rows).unsqueeze(1), a.index_select(0, slots).transpose(1, 2))
    y.index_add_(0, rows, torch.bmm(shrunk, bt.index_select(0, slots)).squeeze(1))


def add_grouped(y: torch.Tensor, x: torch.Tensor, a: torch.Tensor, bt: torch.Tensor, plan: TokenPlan) -> None:
    for slot, rows in plan.groups():
        y.index_add_(0, rows, (x.index_select(0, rows) @ a[slot].T) @ bt[slot])


Strategy = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, TokenPlan], None]
STRATEGIES: dict[str, Strategy] = {"masked": add_masked, "gathered": add_gathered, "grouped": add_grouped}
