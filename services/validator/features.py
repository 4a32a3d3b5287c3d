"""PEFT features the serving runtime does not implement: each set one is refused with its code.

The runtime applies plain LoRA, `scale * B(A(x))` with `scale = lora_alpha / r` (or
`lora_alpha / sqrt(r)` with `use_rslora`), to the targeted modules. Anything that changes
what a forward pass computes beyond that is refused here. Fields that only steer training
or initialisation (lora_dropout, init_lora_weights, loftq/eva/corda/lora_ga configs,
velora_config, layers_to_transform, ...) are kept as uploaded.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from services.validator import codes
from services.validator.codes import Problems


def _enabled(value: Any) -> bool:
    """PEFT's own test for an optional feature: any truthy value (True, a non-empty list or dict)."""
    return bool(value)


def _bias_trained(value: Any) -> bool:
    return value is not None and value != "none"


# field -> (is it in use?, result code, why it is refused)
UNSUPPORTED: dict[str, tuple[Callable[[Any], bool], str, str]] = {
    "use_dora": (_enabled, codes.DORA_UNSUPPORTED, "DoRA adds a magnitude vector per module"),
    "modules_to_save": (_enabled, codes.MODULES_TO_SAVE_UNSUPPORTED, "it replaces whole modules"),
    "lora_bias": (_enabled, codes.LORA_BIAS_UNSUPPORTED, "lora_B carries a bias"),
    "bias": (_bias_trained, codes.BIAS_UNSUPPORTED, "it trains the base model's biases"),
    "layer_replication": (_enabled, codes.FEATURE_UNSUPPORTED, "it changes the layer stack"),
    "trainable_token_indices": (_enabled, codes.FEATURE_UNSUPPORTED, "it replaces embedding rows"),
    "alora_invocation_tokens": (_enabled, codes.FEATURE_UNSUPPORTED, "activated LoRA applies only after a token"),
    "use_qalora": (_enabled, codes.FEATURE_UNSUPPORTED, "QALoRA pools its input"),
    "use_bdlora": (_enabled, codes.FEATURE_UNSUPPORTED, "block-diagonal LoRA stores other shapes"),
    "kasa_config": (_enabled, codes.FEATURE_UNSUPPORTED, "KaSA edits the base weights' singular values"),
    "monteclora_config": (_enabled, codes.FEATURE_UNSUPPORTED, "MonteCLoRA samples its weights"),
    "arrow_config": (_enabled, codes.FEATURE_UNSUPPORTED, "Arrow routes between adapters"),
    "megatron_config": (_enabled, codes.FEATURE_UNSUPPORTED, "Megatron parallel layers"),
    "fan_in_fan_out": (_enabled, codes.FEATURE_UNSUPPORTED, "weights stored transposed (Conv1D)"),
}


def check_features(config: dict[str, Any], problems: Problems) -> None:
    for field_name, (in_use, code, why) in UNSUPPORTED.items():
        value = config.get(field_name)
        if in_use(value):
            problems.add(code, f"{field_name}={_short(value)} is not supported by the serving runtime: {why}")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
