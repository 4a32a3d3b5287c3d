"""`KimiK25ForConditionalGeneration` with vLLM's LoRA declarations (imported lazily by vLLM; see kimi.py).

Mirrors `DeepseekV2ForCausalLM` (which `DeepseekV3ForCausalLM` subclasses): the same packed modules
(`gate_up_proj`, and `fused_qkv_a_proj` as MLA with a q_lora_rank packs it), the per-expert MoE LoRA
layout, no embedding LoRA. `get_mm_mapping` keeps LoRA to the language model: the vision tower
and the projector are never adapted (text only).
"""
from __future__ import annotations

from typing import ClassVar

from vllm.model_executor.models.deepseek_v2 import DeepseekV2ForCausalLM
from vllm.model_executor.models.interfaces import SupportsLoRA, supports_lora
from vllm.model_executor.models.kimi_k25 import KimiK25ForConditionalGeneration
from vllm.model_executor.models.module_mapping import MultiModelKeys

LANGUAGE_MODEL, CONNECTOR, TOWER = "language_model", "mm_projector", "vision_tower"


def deepseek_packed_modules() -> dict[str, list[str]]:
    packed = {name: list(parts) for name, parts in DeepseekV2ForCausalLM.packed_modules_mapping.items()}
    packed.setdefault("fused_qkv_a_proj", ["q_a_proj", "kv_a_proj_with_mqa"])  # vLLM adds it per instance
    return packed


if supports_lora(KimiK25ForConditionalGeneration):  # vLLM declares it itself now: use vLLM's
    KimiK25ForConditionalGenerationWithLoRA = KimiK25ForConditionalGeneration
else:
    class KimiK25ForConditionalGenerationWithLoRA(KimiK25ForConditionalGeneration, SupportsLoRA):
        supports_lora = True
        packed_modules_mapping = deepseek_packed_modules()
        embedding_modules: ClassVar[dict[str, str]] = {}
        is_3d_moe_weight = False

        def get_mm_mapping(self) -> MultiModelKeys:
            return MultiModelKeys.from_string_field(language_model=LANGUAGE_MODEL, connector=CONNECTOR,
                                                    tower_model=TOWER)
