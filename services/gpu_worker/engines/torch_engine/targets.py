"""Which weights of a DeepseekV3-family model a LoRA may adapt, named as the engine names them.

A target is `layers.{i}.{path}`: a Linear (`self_attn.q_a_proj`, `mlp.down_proj`,
`mlp.shared_experts.up_proj`, ...), the fused routed experts (`mlp.experts.gate_up_proj`
`[E, 2·moe_inter, hidden]`, `mlp.experts.down_proj` `[E, hidden, moe_inter]`) or the router
(`mlp.gate`, weight `[E, hidden]`).
"""
from __future__ import annotations

import enum
from dataclasses import dataclass

from torch import nn

EXPERT_PARAMS = ("gate_up_proj", "down_proj")  # module definition order: PEFT nests the first innermost


class TargetKind(enum.Enum):
    LINEAR = "linear"
    EXPERTS = "experts"
    ROUTER = "router"


@dataclass(frozen=True)
class TargetSpec:
    name: str
    kind: TargetKind
    out_features: int
    in_features: int
    num_experts: int = 1

    @property
    def module_path(self) -> str:
        """The nn.Module holding the weight (experts share one module for two targets)."""
        return self.name.rsplit(".", 1)[0] if self.kind is TargetKind.EXPERTS else self.name


def _is_router(module: nn.Module) -> bool:
    weight = getattr(module, "weight", None)
    return hasattr(module, "e_score_correction_bias") and weight is not None and weight.dim() == 2


def _is_experts(module: nn.Module) -> bool:
    return all(getattr(module, p, None) is not None and getattr(module, p).dim() == 3 for p in EXPERT_PARAMS)


def discover_targets(model: nn.Module) -> dict[str, TargetSpec]:
    """Every adaptable weight of the decoder layers, keyed by target name."""
    layers = model.model.layers
    found: dict[str, TargetSpec] = {}
    for index, layer in enumerate(layers):
        for path, module in layer.named_modules():
            name = f"layers.{index}.{path}"
            if isinstance(module, nn.Linear):
                found[name] = TargetSpec(name, TargetKind.LINEAR, module.out_features, module.in_features)
            elif _is_router(module):
                experts, hidden = module.weight.shape
                found[name] = TargetSpec(name, TargetKind.ROUTER, experts, hidden)
            elif _is_experts(module):
                for param in EXPERT_PARAMS:
                    experts, out_features, in_features = getattr(module, param).shape
                    found[f"{name}.{param}"] = TargetSpec(
                        f"{name}.{param}", TargetKind.EXPERTS, out_features, in_features, experts
                    )
    return found
