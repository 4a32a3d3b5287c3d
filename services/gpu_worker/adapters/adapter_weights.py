"""An adapter in the engine's own form: per target, factors A and B with the scaling folded into B."""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class LoraFactors:
    """delta W = b @ a. Linear/router: a [r, in], b [out, r]. Experts: a [E, r, in], b [E, out, r]."""

    a: torch.Tensor
    b: torch.Tensor

    @property
    def rank(self) -> int:
        return self.a.shape[-2]

    def delta(self) -> torch.Tensor:
        return self.b @ self.a

    @property
    def nbytes(self) -> int:
        return self.a.numel() * self.a.element_size() + self.b.numel() * self.b.element_size()


@dataclass(frozen=True)
class AdapterWeights:
    factors: dict[str, LoraFactors]

    @property
    def nbytes(self) -> int:
        return sum(f.nbytes for f in self.factors.values())

    def max_rank(self) -> int:
        return max((f.rank for f in self.factors.values()), default=0)
