"""The slots' stacked LoRA factors, one bank per target weight of the model, grouped by rank.

Adapters of different ranks share the bank without all paying for the largest: a target's factors
of rank r sit in the bucket of rank `bucket_rank(r)` (8, 16, 32, 64, ...: the next power of two,
zero-padded up to it), and a forward computes each bucket present in its batch on its own, so one
rank-64 adapter among rank-8 ones costs its own rank, not 64 for every row (vLLM pads every adapter
to `max_lora_rank`).

A bucket holds entries, not slots: `EntryTable` gives each slot an entry in each bucket its adapter
uses, the same entry for every target, so one plan per forward serves every target; entries are
handed out lowest first and the buckets' tensors grow (doubling, up to the slot count) as entries
are needed. Layouts: A transposed `a_t [C, in, R]` and `bt [C, R, out]` (experts `[E, C, ...]`),
the layouts whose batched matmuls read the factors in place (lora_ops). An entry no adapter holds
for a target is all zeros, so a forward may read it: it adds nothing.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from services.gpu_worker.adapters.adapter_weights import AdapterWeights, LoraFactors
from services.gpu_worker.engines.torch_engine.targets import TargetKind, TargetSpec

MIN_BUCKET_RANK = 8


def bucket_rank(rank: int) -> int:
    """The bucket a rank-`rank` factor pair goes in: the next power of two, at least MIN_BUCKET_RANK."""
    return max(MIN_BUCKET_RANK, 1 << max(rank - 1, 0).bit_length())


class EntryTable:
    """Per rank bucket: which entry each slot holds (shared by every target) and the buckets' capacity."""

    def __init__(self, num_slots: int):
        self.num_slots = num_slots
        self.entries: dict[int, dict[int, int]] = {}  # bucket rank -> slot -> entry
        self.capacity: dict[int, int] = {}

    def assign(self, slot: int, ranks: set[int]) -> dict[int, int]:
        """Give a slot (holding nothing) an entry in each of these buckets; returns bucket rank -> entry."""
        assigned = {}
        for rank in sorted(ranks):
            held = self.entries.setdefault(rank, {})
            taken = set(held.values())
            entry = next(e for e in range(self.num_slots) if e not in taken)
            held[slot] = assigned[rank] = entry
            if entry >= self.capacity.get(rank, 0):
                self.capacity[rank] = min(self.num_slots, max(entry + 1, 2 * self.capacity.get(rank, 0)))
        return assigned

    def release(self, slot: int) -> dict[int, int]:
        """Free a slot's entries; returns bucket rank -> the entry it held."""
        return {rank: held.pop(slot) for rank, held in self.entries.items() if slot in held}


class RankBucket:
    """One target's factors of one rank bucket, every entry side by side."""

    def __init__(self, rank: int, spec: TargetSpec, capacity: int, dtype: torch.dtype, device: torch.device):
        self.rank = rank
        self.loaded: set[int] = set()  # slots whose factors for this target sit here
        lead = (spec.num_experts,) if spec.kind is TargetKind.EXPERTS else ()
        self._lead = len(lead)
        self.a_t = torch.zeros(*lead, capacity, spec.in_features, rank, dtype=dtype, device=device)
        self.bt = torch.zeros(*lead, capacity, rank, spec.out_features, dtype=dtype, device=device)

    @property
    def capacity(self) -> int:
        return self.a_t.shape[self._lead]

    def grow(self, capacity: int) -> None:
        if capacity <= self.capacity:
            return
        old_a, old_bt, count = self.a_t, self.bt, self.capacity
        shape_a, shape_bt = list(old_a.shape), list(old_bt.shape)
        shape_a[self._lead] = shape_bt[self._lead] = capacity
        self.a_t = old_a.new_zeros(shape_a)
        self.bt = old_bt.new_zeros(shape_bt)
        self.entry(self.a_t, slice(0, count)).copy_(old_a)
        self.entry(self.bt, slice(0, count)).copy_(old_bt)

    def write(self, slot: int, entry: int, factors: LoraFactors) -> None:
        rank = factors.rank
        self.loaded.add(slot)  # first: a copy that fails half-way is erased with the slot all the same
        self.entry(self.a_t, entry)[..., :rank].copy_(factors.a.transpose(-1, -2))
        self.entry(self.bt, entry)[..., :rank, :].copy_(factors.b.transpose(-1, -2))

    def erase(self, slot: int, entry: int) -> None:
        if slot in self.loaded:
            self.entry(self.a_t, entry).zero_()
            self.entry(self.bt, entry).zero_()
            self.loaded.discard(slot)

    def entry(self, stacked: torch.Tensor, index: int | slice) -> torch.Tensor:
        return stacked[:, index] if self._lead else stacked[index]


class TargetBank:
    def __init__(self, spec: TargetSpec, num_slots: int, dtype: torch.dtype, device: torch.device):
        self.spec = spec
        self.num_slots = num_slots
        self.dtype, self.device = dtype, device
        self.buckets: dict[int, RankBucket] = {}

    def stage(self, factors: LoraFactors) -> LoraFactors:
        """The factors on this bank's device and dtype, laid out as the buckets hold them (A and B transposed)."""
        a_t = factors.a.transpose(-1, -2).to(self.device, self.dtype).contiguous()
        bt = factors.b.transpose(-1, -2).to(self.device, self.dtype).contiguous()
        return LoraFactors(a_t.transpose(-1, -2), bt.transpose(-1, -2))

    def write(self, slot: int, entry: int, factors: LoraFactors, capacity: int) -> None:
        rank = bucket_rank(factors.rank)
        bucket = self.buckets.get(rank)
        if bucket is None:
            bucket = self.buckets[rank] = RankBucket(rank, self.spec, capacity, self.dtype, self.device)
        bucket.write(slot, entry, factors)

    def fit(self, capacity: dict[int, int]) -> None:
        """Every bucket as large as the entry table's: a forward may read any entry a batch's slots hold."""
        for rank, bucket in self.buckets.items():
            bucket.grow(capacity[rank])

    def erase(self, slot: int, entries: dict[int, int]) -> None:
        for rank, bucket in self.buckets.items():
            if rank in entries:
                bucket.erase(slot, entries[rank])


@dataclass(frozen=True)
class StagedAdapter:
    """An adapter prepared for its slot off the engine's thread: committing it is only the copy into the slot."""

    factors: dict[str, LoraFactors]

    def bucket_ranks(self) -> set[int]:
        return {bucket_rank(f.rank) for f in self.factors.values()}


class LoraBank:
    def __init__(self, targets: dict[str, TargetSpec], num_slots: int, dtype: torch.dtype, device: torch.device):
        self.num_slots = num_slots
        self.entries = EntryTable(num_slots)
        # the router computes its logits in float32 (transformers keeps gate.weight in float32)
        self.targets = {
            name: TargetBank(spec, num_slots, torch.float32 if spec.kind is TargetKind.ROUTER else dtype, device)
            for name, spec in targets.items()
        }

    def load(self, slot: int, weights: AdapterWeights) -> None:
        """Put an adapter in a slot; the slot's previous tenant is gone from every target."""
        self.commit(slot, self.stage(weights))

    def stage(self, weights: AdapterWeights) -> StagedAdapter:
        """Everything `load` does but the copy into a slot (any thread: it touches no slot)."""
        unknown = set(weights.factors) - set(self.targets)
        if unknown:
            raise KeyError(f"adapter targets unknown to this model: {sorted(unknown)}")
        return StagedAdapter({name: self.targets[name].stage(f) for name, f in weights.factors.items()})

    def commit(self, slot: int, staged: StagedAdapter) -> None:
        """Copy a staged adapter into a slot (the engine's thread, between steps)."""
        self.clear(slot)
        assigned = self.entries.assign(slot, staged.bucket_ranks())
        capacity = self.entries.capacity
        for bank in self.targets.values():
            bank.fit(capacity)
        for name, factors in staged.factors.items():
            rank = bucket_rank(factors.rank)
            self.targets[name].write(slot, assigned[rank], factors, capacity[rank])

    def clear(self, slot: int) -> None:
        released = self.entries.release(slot)
        if released:
            for bank in self.targets.values():
                bank.erase(slot, released)
