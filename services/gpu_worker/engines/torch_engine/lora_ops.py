"""Adding each token's own adapter's LoRA term to a batched matmul's output (Punica/S-LoRA's idea).

`y[n] += x[n] @ A[e_n]^T @ Bt[e_n]` for every token n whose adapter holds entry e_n of a rank
bucket; tokens without an adapter get nothing added (`x`, `y`: `[rows, steps, features]`). A
forward's plan is built once (`plan_forward`, from the rows' slots) and serves every target: per
bucket, which rows, which entries, and the index tensors the strategies need. Factors per bucket:
`a_t [C, in, R]`, `bt [C, R, out]` (lora_bank). Three ways, all exact, measured in
tests/bench/bench_engine.py:

- stacked (the worker's): batched matmuls over the bucket's factors as they lie, one matrix per
  entry: rows in entry order (a decode step runs its rows so, see `entry_order`) add their terms
  in place; otherwise the rows' inputs are brought into entry order and the results added back.
  No factor is copied; entries no row uses inside the span are read (bounded: a sparse span
  copies the used entries instead).
- gathered: copy each token's entry's factors (`a_t[e_n]`) and run two batched matmuls.
- grouped: one pair of small matmuls per distinct entry in the batch.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import torch

NO_ADAPTER = -1


@dataclass(frozen=True)
class StackedLayout:
    """Where the stacked strategy puts a bucket's rows: `count` stacked matrices of `per_entry` rows each."""

    first: int  # entry of the first stacked matrix (when the factors are read in place)
    count: int
    used: torch.Tensor | None  # entries to copy out of the factors; None: read entries first..first+count
    rows: torch.Tensor | None  # the bucket's rows in stacked order; None: rows first_row.. already are
    first_row: int
    per_entry: int = 1
    positions: torch.Tensor | None = None  # each row's stacked position when per_entry > 1 or holes
    inverse: torch.Tensor | None = None  # every row of the forward, one an entry: stacked index of each row
    grouped: bool = False  # too uneven to stack: one matmul pair per entry


class BucketPlan:
    """The rows of one forward whose adapters' factors sit in one rank bucket."""

    def __init__(self, rank: int, rows: list[int], entries: list[int], slots: frozenset[int], num_rows: int,
                 steps: int, device: torch.device):
        self.rank, self.rows, self.entries, self.slots = rank, rows, entries, slots
        self.num_rows, self.steps, self.device = num_rows, steps, device

    @cached_property
    def token_rows(self) -> torch.Tensor:
        """The bucket's tokens (row-major over `steps` tokens a row)."""
        rows = torch.tensor(self.rows, device=self.device)
        return (rows[:, None] * self.steps + torch.arange(self.steps, device=self.device)).flatten()

    @cached_property
    def token_entries(self) -> torch.Tensor:
        return torch.tensor(self.entries, device=self.device).repeat_interleave(self.steps)

    @cached_property
    def all_tokens(self) -> bool:
        return len(self.rows) == self.num_rows

    @cached_property
    def entry_per_token(self) -> torch.Tensor:
        """[every token of the forward]: its entry in this bucket, NO_ADAPTER for tokens not in it."""
        per_row = torch.full((self.num_rows,), NO_ADAPTER, dtype=torch.long, device=self.device)
        per_row[torch.tensor(self.rows, device=self.device)] = torch.tensor(self.entries, device=self.device)
        return per_row.repeat_interleave(self.steps)

    @cached_property
    def groups(self) -> list[tuple[int, torch.Tensor]]:
        by_entry: dict[int, list[int]] = {}
        for row, entry in zip(self.rows, self.entries):
            by_entry.setdefault(entry, []).append(row)
        return [(entry, _tokens(rows, self.steps, self.device)) for entry, rows in sorted(by_entry.items())]

    @cached_property
    def stacked(self) -> StackedLayout:
        rows, entries = self.rows, self.entries
        first_row, first = rows[0], min(entries)
        if rows == list(range(first_row, first_row + len(rows))) and entries == list(range(first, first + len(rows))):
            return StackedLayout(first, len(rows), None, None, first_row)  # already in entry order
        used = sorted(set(entries))
        span = used[-1] + 1 - first
        in_place = span <= 2 * len(used)  # reading a few idle entries beats copying the used ones
        local = {e: e - first for e in used} if in_place else {e: i for i, e in enumerate(used)}
        count = span if in_place else len(used)
        used_index = None if in_place else torch.tensor(used, device=self.device)
        per_entry_rows: dict[int, int] = {}
        for entry in entries:
            per_entry_rows[entry] = per_entry_rows.get(entry, 0) + 1
        per_entry = max(per_entry_rows.values())
        if count * per_entry > 2 * len(rows):
            return StackedLayout(first, count, used_index, None, 0, per_entry, grouped=True)
        order = sorted(range(len(rows)), key=lambda i: local[entries[i]])
        seen: dict[int, int] = {}
        positions = []
        for i in order:
            k = seen[entries[i]] = seen.get(entries[i], -1) + 1
            positions.append(local[entries[i]] * per_entry + k)
        ordered = [rows[i] for i in order]
        if positions != list(range(count * per_entry)):
            return StackedLayout(first, count, used_index, self._tensor(ordered), 0, per_entry,
                                 self._tensor(positions))
        inverse = None
        if per_entry == 1 and len(rows) == self.num_rows:
            inverse = self._tensor(sorted(range(len(ordered)), key=ordered.__getitem__))
        return StackedLayout(first, count, used_index, self._tensor(ordered), 0, per_entry, inverse=inverse)

    def _tensor(self, values: list[int]) -> torch.Tensor:
        return torch.tensor(values, device=self.device)


def _tokens(rows: list[int], steps: int, device: torch.device) -> torch.Tensor:
    index = torch.tensor(rows, device=device)
    return (index[:, None] * steps + torch.arange(steps, device=device)).flatten()


class ForwardPlan:
    """Which adapter entries one forward's rows use, per rank bucket."""

    def __init__(self, buckets: dict[int, BucketPlan], num_rows: int, steps: int):
        self.buckets, self.num_rows, self.steps = buckets, num_rows, steps
        self.slots = frozenset().union(*(b.slots for b in buckets.values()))

    def buckets_in_entry_order(self) -> int:
        """How many buckets the stacked strategy adds in place, nothing gathered or scattered."""
        return sum(1 for b in self.buckets.values() if b.stacked.rows is None and not b.stacked.grouped)


def entry_order(slots: list[int], entries: dict[int, dict[int, int]]) -> list[int] | None:
    """An order to run the rows in that puts each bucket's rows together in entry order (by the smallest
    bucket a row's adapter holds an entry of; rows without an adapter last); None: the order they have."""
    ranks = sorted(entries)

    def place(row: int) -> tuple[int, int, int]:
        for rank in ranks:
            entry = entries[rank].get(slots[row])
            if entry is not None:
                return 0, rank, entry
        return 1, 0, 0

    order = sorted(range(len(slots)), key=place)
    return None if order == list(range(len(slots))) else order


def plan_forward(slots: list[int], steps: int, entries: dict[int, dict[int, int]],
                 device: torch.device) -> ForwardPlan | None:
    """The plan for rows using `slots` (one a row, NO_ADAPTER for none), each `steps` tokens long."""
    buckets = {}
    for rank, entry_of in entries.items():
        rows = [row for row, slot in enumerate(slots) if slot in entry_of]
        if rows:
            buckets[rank] = BucketPlan(rank, rows, [entry_of[slots[r]] for r in rows],
                                       frozenset(slots[r] for r in rows), len(slots), steps, device)
    return ForwardPlan(buckets, len(slots), steps) if buckets else None


def add_stacked(y: torch.Tensor, x: torch.Tensor, a_t: torch.Tensor, bt: torch.Tensor, plan: BucketPlan) -> None:
    layout = plan.stacked
    if layout.grouped:
        add_grouped(y, x, a_t, bt, plan)
        return
    if layout.used is not None:
        a_t, bt = a_t.index_select(0, layout.used), bt.index_select(0, layout.used)
    elif layout.first or layout.count != a_t.shape[0]:
        a_t, bt = a_t[layout.first: layout.first + layout.count], bt[layout.first: layout.first + layout.count]
    if layout.rows is None:  # rows first_row.. hold entries first.. in order: everything in place
        if layout.count != plan.num_rows:
            rows = slice(layout.first_row, layout.first_row + layout.count)
            x, y = x[rows], y[rows]
        y.baddbmm_(torch.bmm(x, a_t), bt)
        return
    inputs = x.index_select(0, layout.rows)
    if layout.positions is not None:  # holes or several rows an entry: zero-padded
        padded = inputs.new_zeros(layout.count * layout.per_entry, plan.steps, inputs.shape[-1])
        inputs = padded.index_copy_(0, layout.positions, inputs)
    stacked = inputs.view(layout.count, layout.per_entry * plan.steps, -1)
    out = torch.bmm(torch.bmm(stacked, a_t), bt).view(layout.count * layout.per_entry, plan.steps, -1)
    if layout.positions is not None:
        out = out.index_select(0, layout.positions)
    if layout.inverse is not None:  # every row, each its own entry: a gather is cheaper than a scatter-add
        y.add_(out.index_select(0, layout.inverse))
    else:
        y.index_add_(0, layout.rows, out)


def add_gathered(y: torch.Tensor, x: torch.Tensor, a_t: torch.Tensor, bt: torch.Tensor, plan: BucketPlan) -> None:
    add_per_token(y.view(-1, y.shape[-1]), x.reshape(-1, x.shape[-1]), a_t, bt,
                  None if plan.all_tokens else plan.token_rows, plan.token_entries)


def add_per_token(y: torch.Tensor, x: torch.Tensor, a_t: torch.Tensor, bt: torch.Tensor,
                  tokens: torch.Tensor | None, entries: torch.Tensor) -> None:
    """`tokens` (None: all, in order) each with its own entry's factors, copied out. y, x: [tokens, features]."""
    inputs = x if tokens is None else x.index_select(0, tokens)
    shrunk = torch.bmm(inputs.unsqueeze(1), a_t.index_select(0, entries))
    out = torch.bmm(shrunk, bt.index_select(0, entries)).squeeze(1)
    if tokens is None:
        y.add_(out)
    else:
        y.index_add_(0, tokens, out)


def add_grouped(y: torch.Tensor, x: torch.Tensor, a_t: torch.Tensor, bt: torch.Tensor, plan: BucketPlan) -> None:
    y, x = y.view(-1, y.shape[-1]), x.reshape(-1, x.shape[-1])
    for entry, tokens in plan.groups:
        y.index_add_(0, tokens, (x.index_select(0, tokens) @ a_t[entry]) @ bt[entry])


Strategy = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, BucketPlan], None]
STRATEGIES: dict[str, Strategy] = {"stacked": add_stacked, "gathered": add_gathered, "grouped": add_grouped}
DEFAULT_STRATEGY = "stacked"
