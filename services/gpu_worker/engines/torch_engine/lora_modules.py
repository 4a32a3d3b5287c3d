"""Multi-LoRA wrappers installed on a transformers DeepseekV3 model's adaptable weights.

Each wrapper computes the base output, then adds every token's own adapter's LoRA term (see
lora_ops). The fused routed experts and the router are not Linears, so their forwards are
written out (here transformers' top-k routing with the router's delta, in lora_experts its eager
expert loop with the per-expert deltas); PEFT's own mixed batching refuses exactly these.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from services.gpu_worker.engines.torch_engine.lora_bank import LoraBank, RankBucket, TargetBank
from services.gpu_worker.engines.torch_engine.lora_experts import MultiLoraExperts
from services.gpu_worker.engines.torch_engine.lora_ops import (
    DEFAULT_STRATEGY,
    STRATEGIES,
    BucketPlan,
    ForwardPlan,
    Strategy,
    add_stacked,
    entry_order,
    plan_forward,
)
from services.gpu_worker.engines.torch_engine.targets import TargetKind


class LoraContext:
    """What the forward in progress needs: which entries its rows use and how to add the terms."""

    def __init__(self, bank: LoraBank, strategy: str = DEFAULT_STRATEGY):
        self.bank = bank
        self.plan: ForwardPlan | None = None
        self.strategy: Strategy = STRATEGIES[strategy]

    def plan_for(self, slots: list[int], steps: int, device: torch.device) -> ForwardPlan | None:
        return plan_forward(slots, steps, self.bank.entries.entries, device)

    def decode_plan(self, slots: list[int], device: torch.device) -> tuple[list[int] | None, ForwardPlan | None]:
        """A decode step's plan, and the order to run its rows in (None: as they are) when another order puts
        more rank buckets' rows in entry order (the stacked strategy then moves no row, for any target)."""
        plan = self.plan_for(slots, 1, device)
        if plan is None or self.strategy is not add_stacked or len(plan.buckets) == plan.buckets_in_entry_order():
            return None, plan
        order = entry_order(slots, self.bank.entries.entries)
        if order is None:
            return None, plan
        ordered = self.plan_for([slots[row] for row in order], 1, device)
        return (order, ordered) if ordered.buckets_in_entry_order() > plan.buckets_in_entry_order() else (None, plan)

    def terms(self, bank: TargetBank) -> list[tuple[RankBucket, BucketPlan]]:
        """The target's buckets that hold factors of some row of the forward in progress."""
        plan = self.plan
        if plan is None:
            return []
        found = []
        for rank, bucket in bank.buckets.items():
            bucket_plan = plan.buckets.get(rank)
            if bucket_plan is not None and not bucket_plan.slots.isdisjoint(bucket.loaded):
                found.append((bucket, bucket_plan))
        return found


class MultiLoraLinear(nn.Module):
    def __init__(self, base: nn.Linear, bank: TargetBank, context: LoraContext):
        super().__init__()
        self.base, self.bank, self.context = base, bank, context

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base(x)
        if self.context.plan is not None:
            _add_terms(self.context, self.bank, y, x)
        return y


def _add_terms(context: LoraContext, bank: TargetBank, y: torch.Tensor, x: torch.Tensor) -> None:
    """x, y: the runner's `[rows, steps, features]` (other shapes are viewed so)."""
    terms = context.terms(bank)
    if terms and x.dim() != 3:
        plan = context.plan
        x, y = x.reshape(plan.num_rows, plan.steps, -1), y.view(plan.num_rows, plan.steps, -1)
    for bucket, bucket_plan in terms:
        context.strategy(y, x, bucket.a_t, bucket.bt, bucket_plan)


class MultiLoraRouter(nn.Module):
    """transformers' DeepseekV3TopkRouter with each token's router LoRA added to its logits."""

    def __init__(self, base: nn.Module, bank: TargetBank, context: LoraContext):
        super().__init__()
        self.base, self.bank, self.context = base, bank, context

    def forward(self, hidden_states: torch.Tensor):
        router = self.base
        hidden = hidden_states.view(-1, router.hidden_dim).type(torch.float32)
        logits = F.linear(hidden, router.weight.type(torch.float32))
        if self.context.plan is not None:
            _add_terms(self.context, self.bank, logits, hidden)
        weights, indices = _route(router, logits)
        return logits, weights, indices


def _route(router: nn.Module, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    scores = logits.sigmoid()
    choice = scores + router.e_score_correction_bias
    per_group = router.num_experts // router.num_group
    group_scores = choice.view(-1, router.num_group, per_group).topk(2, dim=-1)[0].sum(dim=-1)
    group_idx = torch.topk(group_scores, k=router.topk_group, dim=-1, sorted=False)[1]
    group_mask = torch.zeros_like(group_scores).scatter_(1, group_idx, 1)
    score_mask = group_mask.unsqueeze(-1).expand(-1, router.num_group, per_group).reshape(-1, router.num_experts)
    choice = choice.masked_fill(~score_mask.bool(), float("-inf"))
    indices = torch.topk(choice, k=router.top_k, dim=-1, sorted=False)[1]
    weights = scores.gather(1, indices)
    if router.norm_topk_prob:
        weights = weights / (weights.sum(dim=-1, keepdim=True) + 1e-20)
    return weights * router.routed_scaling_factor, indices


def install_multi_lora(model: nn.Module, bank: LoraBank, context: LoraContext) -> None:
    """Replace every adaptable module of the decoder layers with its multi-LoRA wrapper (once per model)."""
    layers = model.model.layers
    for target in bank.targets.values():
        spec = target.spec
        parent, child = _parent_of(layers, spec.module_path)
        base = getattr(parent, child)
        if spec.kind is TargetKind.LINEAR:
            wrapper = MultiLoraLinear(base, target, context)
        elif spec.kind is TargetKind.ROUTER:
            wrapper = MultiLoraRouter(base, target, context)
        elif spec.name.endswith(".gate_up_proj"):  # one wrapper per experts module, holding both of its banks
            wrapper = MultiLoraExperts(base, target, bank.targets[f"{spec.module_path}.down_proj"], context)
        else:
            continue
        setattr(parent, child, wrapper)


def _parent_of(layers: nn.ModuleList, target_path: str) -> tuple[nn.Module, str]:
    _, index, rest = target_path.split(".", 2)
    parent_path, _, child = rest.rpartition(".")
    parent = layers[int(index)]
    return (parent.get_submodule(parent_path) if parent_path else parent), child
