"""Choosing each row's next token: greedy at temperature 0, else temperature + nucleus (top_p), seeded per request."""
from __future__ import annotations

import math
import random
from dataclasses import dataclass

import torch

# below this a temperature is greedy in all but float noise, and dividing logits by it overflows float32
MIN_TEMPERATURE = 1e-5
# OpenAI's `seed` is a 64-bit signed integer (torch takes -2**63 .. 2**64-1, so this range always seeds)
SEED_MIN, SEED_MAX = -(2**63), 2**63 - 1


@dataclass(frozen=True)
class SamplingSpec:
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None

    @property
    def greedy(self) -> bool:
        return self.temperature < MIN_TEMPERATURE

    def problem(self) -> str | None:
        """Why this spec cannot be sampled, in words a caller can act on; None when it can."""
        if not (math.isfinite(self.temperature) and self.temperature >= 0):
            return f"temperature must be a finite number of at least 0, not {self.temperature}"
        if not (math.isfinite(self.top_p) and 0 <= self.top_p <= 1):
            return f"top_p must be between 0 and 1, not {self.top_p}"
        if self.seed is not None and not SEED_MIN <= self.seed <= SEED_MAX:
            return f"seed must be a 64-bit signed integer ({SEED_MIN} to {SEED_MAX})"
        return None


class RowSampler:
    """One request's sampler; its generator makes a seeded request repeatable.

    Built when the engine accepts the request: a spec it cannot honour raises ValueError there,
    so that one request is refused alone instead of failing a step every other row shares.
    """

    def __init__(self, spec: SamplingSpec, device: torch.device):
        problem = spec.problem()
        if problem is not None:
            raise ValueError(problem)
        self.spec = spec
        self.generator = None
        if not spec.greedy:
            self.generator = torch.Generator(device=device)
            self.generator.manual_seed(spec.seed if spec.seed is not None else random.getrandbits(63))

    def sample(self, logits: torch.Tensor) -> int:
        if self.spec.greedy:
            return int(logits.argmax())
        probs = torch.softmax(logits.float() / self.spec.temperature, dim=-1)
        if self.spec.top_p < 1.0:
            probs = _nucleus(probs, self.spec.top_p)
        return int(torch.multinomial(probs, 1, generator=self.generator))


def _nucleus(probs: torch.Tensor, top_p: float) -> torch.Tensor:
    """Keep the smallest set of most likely tokens whose mass reaches top_p (the top token always)."""
    sorted_probs, order = probs.sort(descending=True)
    before = sorted_probs.cumsum(-1) - sorted_probs
    drop = before >= top_p
    drop[..., 0] = False  # the top token stays even at top_p 0 (and float noise in `before`)
    sorted_probs[drop] = 0.0
    kept = torch.zeros_like(probs).scatter_(-1, order, sorted_probs)
    return kept / kept.sum()


def sample_rows(logits: torch.Tensor, samplers: list[RowSampler], vocab_limit: int) -> list[int]:
    """Next token per row; ids at or above `vocab_limit` (no token for them) are never chosen."""
    if vocab_limit < logits.shape[-1]:
        logits = logits.clone()
        logits[:, vocab_limit:] = float("-inf")
    greedy = logits.argmax(dim=-1).tolist()
    return [greedy[i] if s.spec.greedy else s.sample(logits[i]) for i, s in enumerate(samplers)]
