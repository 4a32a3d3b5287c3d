"""transformers' eager routed-experts loop with each token's per-expert gate_up/down LoRA added.

PEFT's own mixed batching refuses the fused experts. Here a token routed to expert e adds its
adapter's factors of expert e. A decode step routes few tokens to each expert, each with its own
adapter: the terms of every (token, choice) pair are computed at once, each pair copying its own
(expert, entry) factors (one batched matmul pair per target and bucket, not one per expert), and
the loop over experts only adds each expert's rows. A long prefill instead multiplies each
expert's tokens of one adapter by that adapter's factors as they lie (nothing copied).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from services.gpu_worker.engines.torch_engine.lora_bank import RankBucket, TargetBank
from services.gpu_worker.engines.torch_engine.lora_ops import NO_ADAPTER, BucketPlan

PAIRS_GATHERED = 256  # (token, choice) pairs up to which the pairs' factors are copied out together
Terms = list[tuple[RankBucket, BucketPlan]]


class MultiLoraExperts(nn.Module):
    def __init__(self, base: nn.Module, gate_up: TargetBank, down: TargetBank, context):
        super().__init__()
        self.base, self.gate_up, self.down, self.context = base, gate_up, down, context

    def forward(self, hidden: torch.Tensor, top_k_index: torch.Tensor, top_k_weights: torch.Tensor) -> torch.Tensor:
        experts = self.base
        gate_up_terms, down_terms = self.context.terms(self.gate_up), self.context.terms(self.down)
        paired = top_k_index.numel() <= PAIRS_GATHERED
        expert_mask = F.one_hot(top_k_index, num_classes=experts.num_experts).permute(2, 1, 0)
        routed = [(expert, *torch.where(expert_mask[expert]))
                  for expert in (expert_mask.sum(dim=(-1, -2)) > 0).nonzero().flatten().tolist()]
        gate_up_delta = pair_terms(hidden, top_k_index, gate_up_terms) if gate_up_terms and paired else None
        activations = []
        for expert, top_k_pos, token_idx in routed:
            x = hidden.index_select(0, token_idx)
            gate_up = F.linear(x, experts.gate_up_proj[expert])
            if gate_up_delta is not None:
                gate_up += gate_up_delta[token_idx, top_k_pos]
            elif gate_up_terms:
                add_by_entry(gate_up, x, expert, token_idx, gate_up_terms)
            gate, up = gate_up.chunk(2, dim=-1)
            activations.append(experts.act_fn(gate) * up)
        down_delta = None
        if down_terms and paired:
            per_pair = hidden.new_zeros(*top_k_index.shape, experts.down_proj.shape[-1])
            for (_, top_k_pos, token_idx), h in zip(routed, activations):
                per_pair[token_idx, top_k_pos] = h
            down_delta = pair_terms(per_pair.flatten(0, 1), top_k_index, down_terms)
        final = torch.zeros_like(hidden)
        for (expert, top_k_pos, token_idx), h in zip(routed, activations):
            out = F.linear(h, experts.down_proj[expert])
            if down_delta is not None:
                out += down_delta[token_idx, top_k_pos]
            elif down_terms:
                add_by_entry(out, h, expert, token_idx, down_terms)
            out = out * top_k_weights[token_idx, top_k_pos, None]
            final.index_add_(0, token_idx, out.to(final.dtype))
        return final


def pair_terms(x: torch.Tensor, top_k_index: torch.Tensor, terms: Terms) -> torch.Tensor:
    """[tokens, k, out]: each (token, choice) pair's LoRA term for the expert it chose. `x`: [tokens, in]
    (every choice of a token sees its input) or [tokens·k, in] (one input a pair)."""
    tokens, k = top_k_index.shape
    if x.shape[0] == tokens:
        x = x.repeat_interleave(k, dim=0)
    delta = None
    for bucket, plan in terms:
        a_t, bt = bucket.a_t.flatten(0, 1), bucket.bt.flatten(0, 1)  # [experts·entries, ...]
        entries = plan.entry_per_token[:, None]
        index = (top_k_index * bucket.capacity + entries).flatten()
        pairs = None
        if not plan.all_tokens:
            pairs = (entries != NO_ADAPTER).expand(tokens, k).flatten().nonzero().squeeze(1)
            index, inputs = index.index_select(0, pairs), x.index_select(0, pairs)
        else:
            inputs = x
        shrunk = torch.bmm(inputs.unsqueeze(1), a_t.index_select(0, index))
        term = torch.bmm(shrunk, bt.index_select(0, index)).squeeze(1)
        if pairs is not None:
            term = term.new_zeros(tokens * k, term.shape[-1]).index_copy_(0, pairs, term)
        delta = term if delta is None else delta.add_(term)
    return delta.view(tokens, k, -1)


def add_by_entry(y: torch.Tensor, x: torch.Tensor, expert: int, token_idx: torch.Tensor, terms: Terms) -> None:
    """One expert's tokens (`y`, `x` rows), grouped by adapter entry: one matmul pair a group."""
    for bucket, plan in terms:
        entries = plan.entry_per_token.index_select(0, token_idx)
        for entry in entries.unique().tolist():
            if entry != NO_ADAPTER:
                rows = (entries == entry).nonzero().squeeze(1)
                y.index_add_(0, rows, (x.index_select(0, rows) @ bucket.a_t[expert, entry]) @ bucket.bt[expert, entry])
