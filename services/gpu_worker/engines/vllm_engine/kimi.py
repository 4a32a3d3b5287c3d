"""Kimi-K2.5/K2.6 served with LoRA by vLLM: its vision-language wrapper declared LoRA-capable, text only.

vLLM's `KimiK25ForConditionalGeneration` (a MoonViT tower and projector around a DeepSeek-V3
`language_model`) does not declare `SupportsLoRA` (vLLM issue #43840, open PR #43952), so vLLM
refuses `enable_lora` for it. We declare it the way others serve it (`kimi_model.py`): the DeepSeek
decoder's LoRA declarations on the language model only. This module is the vLLM general plugin
(pyproject's `vllm.general_plugins` entry point) that every process vLLM starts loads: it only
points the architecture name at our class, lazily (importing vLLM's model modules this early
breaks its CPU platform's start-up).
"""
from __future__ import annotations

ARCHITECTURE = "KimiK25ForConditionalGeneration"
OUR_CLASS = "services.gpu_worker.engines.vllm_engine.kimi_model:KimiK25ForConditionalGenerationWithLoRA"


def register() -> None:
    from vllm import ModelRegistry

    ModelRegistry.register_model(ARCHITECTURE, OUR_CLASS)
