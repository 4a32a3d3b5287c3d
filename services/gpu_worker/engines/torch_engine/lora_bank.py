"""The slots' stacked LoRA factors, one bank per target weight of the model.

Each bank holds every slot's factors side by side (`a [S, R, in]`, `bt [S, R, out]`; experts
`[E, S, R, ...]` so one expert's slots are contiguous). R grows to the largest rank loaded so far;
smaller ranks are zero-padded, which adds nothing.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from services.gpu_worker.adapters.adapter_weights import AdapterWeights, LoraFactors
from services.gpu_worker.engines.torch_engine.targets import TargetKind, TargetSpec


class TargetBank:
    def __init__(self, spec: TargetSpec, num_slots: int, dtype: torch.dtype, device: torch.device):
        self.spec = spec
        self.num_slots = num_slots
        self.dtype, self.device = dtype, device
        self.rank = 0
        self.loaded = [False] * num_slots
        self.a = self.bt = None
        self._allocate(0)

    @property
    def _experts_dims(self) -> tuple[int, ...]:
        return (self.spec.num_experts,) if self.spec.kind is TargetKind.EXPERTS else ()

    def _allocate(self, rank: int) -> None:
        lead = (*self._experts_dims, self.num_slots, rank)
        a = torch.zeros(*lead, self.spec.in_features, dtype=self.dtype, device=self.device)
        bt = torch.zeros(*lead, self.spec.out_features, dtype=self.dtype, device=self.device)
        if self.a is not None:
            a[..., : self.rank, :] = self.a
            bt[..., : self.rank, :] = self.bt
        self.a, self.bt, self.rank = a, bt, rank

    def serves(self, slots: frozenset[int]) -> bool:
        return any(self.loaded[s] for s in slots)

    def write(self, slot: int, factors: LoraFactors) -> None:
        rank = factors.rank
        if rank > self.rank:
            self._allocate(rank)
        a = factors.a.to(self.device, self.dtype)
        bt = factors.b.transpose(-1, -2).to(self.device, self.dtype)
        self._slot(self.a, slot).zero_()
        self._slot(self.bt, slot).zero_()
        self._slot(self.a, slot)[..., :rank, :] = a
        self._slot(self.bt, slot)[..., :rank, :] = bt
        self.loaded[slot] = True

    def stage(self, factors: LoraFactors) -> LoraFactors:
        """The factors on this bank's device and dtype, B already transposed as `write` copies it."""
        bt = factors.b.transpose(-1, -2).to(self.device, self.dtype).contiguous()
        return LoraFactors(factors.a.to(self.device, self.dtype).contiguous(), bt.transpose(-1, -2))

    def clear(self, slot: int) -> None:
        if self.loaded[slot]:
            self._slot(self.a, slot).zero_()
            self._slot(self.bt, slot).zero_()
            self.loaded[slot] = False

    def _slot(self, stacked: torch.Tensor, slot: int) -> torch.Tensor:
        return stacked[:, slot] if self._experts_dims else stacked[slot]


@dataclass(frozen=True)
class StagedAdapter:
    """An adapter prepared for its slot off the engine's thread: committing it is only the copy into the slot."""

    factors: dict[str, LoraFactors]


class LoraBank:
    def __init__(self, targets: dict[str, TargetSpec], num_slots: int, dtype: torch.dtype, device: torch.device):
        self.num_slots = num_slots
        # the router computes its logits in float32 (transformers keeps gate.weight in float32)
        self.targets = {
            name: TargetBank(spec, num_slots, torch.float32 if spec.kind is TargetKind.ROUTER else dtype, device)
            for name, spec in targets.items()
        }

    def load(self, slot: int, weights: AdapterWeights) -> None:
        """Put an adapter in a slot; targets it does not adapt are cleared of the slot's previous tenant."""
        self.commit(slot, self.stage(weights))

    def stage(self, weights: AdapterWeights) -> StagedAdapter:
        """Everything `load` does but the copy into a slot (any thread: it touches no slot)."""
        unknown = set(weights.factors) - set(self.targets)
        if unknown:
            raise KeyError(f"adapter targets unknown to this model: {sorted(unknown)}")
        return StagedAdapter({name: self.targets[name].stage(f) for name, f in weights.factors.items()})

    def commit(self, slot: int, staged: StagedAdapter) -> None:
        """Copy a staged adapter into a slot (the engine's thread, between steps)."""
        for name, bank in self.targets.items():
            if name in staged.factors:
                bank.write(slot, staged.factors[name])
            else:
                bank.clear(slot)

    def clear(self, slot: int) -> None:
        for bank in self.targets.values():
            bank.clear(slot)
