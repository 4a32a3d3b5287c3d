"""The worker's own check that its engine applies every module an adapter adapts.

The validator refuses such adapters for the model's catalogue engine already; this check holds
when a worker runs another engine (`--engine`) or an engine whose capabilities changed since the
adapter was validated: an adapter is refused, never served partly applied.
"""
from __future__ import annotations

from services.gpu_worker.adapters.adapter_weights import AdapterWeights
from services.gpu_worker.errors import AdapterRejected, Problem
from shared.catalogue.engines import EngineCapabilities
from shared.catalogue.shapes import Group

MODULE_UNSUPPORTED_BY_ENGINE = "module_unsupported_by_engine"


def module_group(target: str) -> tuple[Group, str]:
    """`layers.{i}.{path}` (the engine's target names) -> (group, projection), as the catalogue names them."""
    path = target.split(".", 2)[2]
    projection = path.rsplit(".", 1)[-1]
    if path.startswith("self_attn."):
        return Group.ATTENTION, projection
    if path == "mlp.gate":
        return Group.ROUTER, "gate"
    if path.startswith("mlp.experts."):
        return Group.FUSED_EXPERTS, projection
    if path.startswith("mlp.shared_experts."):
        return Group.SHARED_EXPERTS, projection
    return Group.DENSE_MLP, projection


def check_applied(weights: AdapterWeights, capabilities: EngineCapabilities, lora_enabled: bool = True) -> None:
    """Raise `AdapterRejected` naming every module the engine would not apply."""
    if not lora_enabled:
        raise AdapterRejected([Problem(MODULE_UNSUPPORTED_BY_ENGINE, f"this {capabilities.name} worker serves "
                                       "no adapters (MoE-layer LoRA needs a GPU)")])
    problems = []
    for target in weights.factors:
        reason = capabilities.unapplied_reason(*module_group(target))
        if reason is not None:
            problems.append(Problem(MODULE_UNSUPPORTED_BY_ENGINE, f"{target}: {reason}"))
    if problems:
        raise AdapterRejected(problems)
