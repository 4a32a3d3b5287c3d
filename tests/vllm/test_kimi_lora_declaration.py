"""Kimi-K2.5/K2.6's wrapper is LoRA-capable in our vLLM worker, text only, through the vLLM plugin."""
from importlib.metadata import entry_points


def test_the_plugin_is_registered_for_every_vllm_process():
    plugins = {ep.name: ep.value for ep in entry_points(group="vllm.general_plugins")}
    assert plugins["loraserve_kimi_lora"] == "services.gpu_worker.engines.vllm_engine.kimi:register"


def test_vllm_resolves_the_kimi_architecture_to_a_lora_capable_class_after_loading_plugins():
    from vllm import ModelRegistry
    from vllm.model_executor.models.interfaces import supports_lora
    from vllm.plugins import load_general_plugins

    load_general_plugins()
    model_class = ModelRegistry._try_load_model_cls("KimiK25ForConditionalGeneration")
    assert model_class is not None and supports_lora(model_class)


def test_the_declaration_mirrors_the_deepseek_decoder_on_the_language_model_only():
    from vllm.model_executor.models.deepseek_v2 import DeepseekV2ForCausalLM
    from vllm.model_executor.models.kimi_k25 import KimiK25ForConditionalGeneration

    from services.gpu_worker.engines.vllm_engine.kimi_model import (
        KimiK25ForConditionalGenerationWithLoRA as Kimi,
    )

    assert issubclass(Kimi, KimiK25ForConditionalGeneration)
    for name, parts in DeepseekV2ForCausalLM.packed_modules_mapping.items():
        assert Kimi.packed_modules_mapping[name] == parts
    assert Kimi.packed_modules_mapping["fused_qkv_a_proj"] == ["q_a_proj", "kv_a_proj_with_mqa"]
    assert Kimi.is_3d_moe_weight is False and Kimi.embedding_modules == {}
    mapping = Kimi.get_mm_mapping(None)
    assert mapping.language_model == ["language_model"]
    assert mapping.tower_model == ["vision_tower"] and mapping.connector == ["mm_projector"]
