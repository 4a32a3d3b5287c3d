"""The serving engines a catalogue model can name, their arguments, and what each applies of an adapter.

Plain data (no torch, no vLLM): the validator checks an adapter against the capabilities of the
engine that serves its model, and the worker checks them again when it loads the adapter, so an
adapter is never served partly applied. `revision` changes whenever what an engine applies changes;
a validation record remembers the revision it passed under (records of an older one are validated
again).
"""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.catalogue.shapes import Group

EngineName = Literal["torch", "vllm"]
# vLLM accepts these max_lora_rank values only (vllm/config/lora.py)
VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)


class EngineSpec(BaseModel):
    """The catalogue's engine entry: which engine serves the model and with what arguments."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: EngineName
    tensor_parallel_size: int = Field(1, ge=1)
    pipeline_parallel_size: int = Field(1, ge=1)
    enable_expert_parallel: bool = False
    dtype: str = "auto"
    quantization: str | None = None
    max_model_len: int | None = Field(None, gt=0)
    # the rank vLLM's LoRA buffers are sized for (rounded up to one vLLM accepts); None: the model's max rank
    max_lora_rank: int | None = Field(None, gt=0)
    # where the weights are mounted (a volume); None: a model the catalogue builds from its seed
    model_path: str | None = None
    # further AsyncEngineArgs fields, passed through as they are
    extra_args: dict[str, Any] = Field(default_factory=dict)


def with_overrides(spec: EngineSpec, overrides: dict[str, Any]) -> EngineSpec:
    """`spec` with an environment's overrides (settings.worker_engine_args); `extra_args` merge key by key.
    Raises pydantic's ValidationError for an unknown field or a bad value."""
    if not overrides:
        return spec
    merged = {**spec.model_dump(), **overrides}
    merged["extra_args"] = {**spec.extra_args, **overrides.get("extra_args", {})}
    return EngineSpec.model_validate(merged)


class EngineCapabilities(BaseModel):
    """What an engine applies of an adapter: every module, except those listed with the reason."""

    model_config = ConfigDict(frozen=True)

    name: EngineName
    revision: int
    # (module group, projection or "*") -> why the engine does not apply a LoRA there
    unapplied: dict[tuple[Group, str], str] = Field(default_factory=dict)

    def unapplied_reason(self, group: Group, projection: str) -> str | None:
        return self.unapplied.get((group, projection)) or self.unapplied.get((group, "*"))

    @property
    def fingerprint(self) -> str:
        return f"{self.name}/{self.revision}"


CAPABILITIES: dict[EngineName, EngineCapabilities] = {
    "torch": EngineCapabilities(name="torch", revision=1),
    "vllm": EngineCapabilities(name="vllm", revision=1, unapplied={
        # measured on vLLM 0.32: MLA absorbs kv_b_proj into the attention kernels and its LoRA is
        # dropped without a word (an adapter on kv_b_proj alone gives exactly the base model's output)
        (Group.ATTENTION, "kv_b_proj"): "vLLM's MLA attention absorbs kv_b_proj and applies no LoRA to it",
        # DeepSeek's router is vLLM's GateLinear, which has no LoRA layer
        (Group.ROUTER, "*"): "vLLM applies no LoRA to the MoE router (mlp.gate)",
    }),
}


def capabilities(engine: EngineName | EngineSpec) -> EngineCapabilities:
    return CAPABILITIES[engine.name if isinstance(engine, EngineSpec) else engine]


def vllm_lora_rank(max_rank: int) -> int:
    """The smallest rank vLLM accepts that holds `max_rank`."""
    for rank in VLLM_LORA_RANKS:
        if rank >= max_rank:
            return rank
    raise ValueError(f"rank {max_rank} exceeds vLLM's largest LoRA rank {VLLM_LORA_RANKS[-1]}")
