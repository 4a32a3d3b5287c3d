"""The rules a request must meet before it becomes a job: metadata limits, completion windows, the model's
context, LoRA usability.

Pure: each check raises an ApiError whose message says what to do, listing every problem at once.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from services.inference_router.loras import LoraView
from shared.catalogue.catalogue import ModelEntry
from shared.contracts.errors import BadRequest, NotFound
from shared.contracts.inference import (
    METADATA_MAX_KEY_CHARS,
    METADATA_MAX_PAIRS,
    METADATA_MAX_VALUE_CHARS,
)

LORA_KEY = "lora"
WINDOW_KEY = "completion_window"
WINDOWS = ("asap", "priority", "standard", "flex")
# when a request names no window: base models run as soon as possible; LoRA requests may not use asap
DEFAULT_WINDOW = "asap"
DEFAULT_LORA_WINDOW = "priority"
# The most characters one token of a model's tokenizer can cover, so characters / this is a lower bound
# on a prompt's tokens and only prompts that cannot fit are refused. The tiny model's tokenizer is
# byte-level, but its special tokens (the longest, "<|assistant|>", has 13 characters) are matched in
# text too. Other tokenizers are BPE vocabularies whose longest tokens are runs of one character: 128
# is a conservative bound for them.
TOKEN_CHARS_BOUND = {"loraserve/kimi-k2-tiny": 13}
DEFAULT_TOKEN_CHARS_BOUND = 128


@dataclass(frozen=True)
class Routing:
    """What `metadata` asks of the platform itself."""

    lora_ref: str | None
    window: str


def validate_metadata(metadata: dict[str, Any] | None) -> dict[str, str]:
    """OpenAI's limits: at most 16 pairs, keys up to 64 characters, string values up to 512."""
    metadata = metadata or {}
    problems: list[tuple[str, str]] = []
    if len(metadata) > METADATA_MAX_PAIRS:
        problems.append(("metadata", f"metadata has {len(metadata)} pairs; at most {METADATA_MAX_PAIRS} are allowed"))
    for key, value in metadata.items():
        if len(key) > METADATA_MAX_KEY_CHARS:
            problems.append(("metadata", f"metadata key '{key[:20]}…' is longer than {METADATA_MAX_KEY_CHARS} chars"))
        if not isinstance(value, str):
            problems.append((f"metadata.{key}", f"metadata.{key} must be a string"))
        elif len(value) > METADATA_MAX_VALUE_CHARS:
            problems.append((f"metadata.{key}", f"metadata.{key} is longer than {METADATA_MAX_VALUE_CHARS} chars"))
    if problems:
        raise BadRequest("Invalid metadata: " + "; ".join(p[1] for p in problems), param=problems[0][0],
                         code="invalid_metadata")
    return dict(metadata)


def routing_of(metadata: dict[str, str]) -> Routing:
    lora_ref = metadata.get(LORA_KEY)
    if lora_ref is not None and not lora_ref.strip():
        raise BadRequest("metadata.lora is empty: pass a LoRA's name or id, or leave the key out.",
                         param="metadata.lora", code="invalid_metadata")
    window = metadata.get(WINDOW_KEY)
    if window is None:
        window = DEFAULT_LORA_WINDOW if lora_ref else DEFAULT_WINDOW
    elif window not in WINDOWS:
        raise BadRequest(f"metadata.completion_window '{window}' is not one of {', '.join(WINDOWS)}.",
                         param="metadata.completion_window", code="invalid_completion_window")
    return Routing(lora_ref=lora_ref, window=window)


def estimated_prompt_tokens(model: ModelEntry, texts: list[str]) -> int:
    """The fewest tokens these texts can take in the model's tokenizer (no tokenizer in the router)."""
    return sum(len(text) for text in texts) // TOKEN_CHARS_BOUND.get(model.id, DEFAULT_TOKEN_CHARS_BOUND)


def check_prompt_fits(model: ModelEntry, texts: list[str], param: str) -> None:
    """Refuse, before it reaches a queue, a prompt that cannot leave the model room for one output token."""
    context = model.architecture.max_position_embeddings
    at_least = estimated_prompt_tokens(model, texts)
    if at_least >= context:
        raise BadRequest(f"The prompt is too long for model '{model.id}': it has at least {at_least} tokens and the "
                         f"model's context holds {context} tokens, prompt and output together. Shorten the "
                         "prompt and send the request again.", param=param, code="context_length_exceeded")


def lora_not_found(ref: str) -> NotFound:
    return NotFound(f"LoRA '{ref}' was not found in your organization. Pass the name or id of one of your "
                    "LoRAs (GET /v1/loras lists them).", param="metadata.lora", code="lora_not_found")


def model_not_found(model: str) -> NotFound:
    return NotFound(f"The model '{model}' does not exist. GET /v1/models lists the models served here.",
                    param="model", code="model_not_found")


def check_lora_usable(lora: LoraView, model: str, window: str) -> None:
    """The seed's constraints on LoRA requests; pending, running and unverified validations are usable."""
    problems: list[tuple[str, str, str]] = []
    if window == "asap":
        problems.append(("metadata.completion_window", "completion_window_not_allowed",
                         "completion_window 'asap' cannot be used with a LoRA: use priority, standard or flex."))
    if model not in lora.supported_models:
        supported = ", ".join(lora.supported_models) or "none"
        problems.append(("model", "model_not_supported_by_lora",
                         (f"LoRA '{lora.name}' does not support model '{model}' (its supported_models: "
                          f"{supported}). Request one of those, or add the model with PATCH /v1/loras/{lora.name}.")))
    else:
        latest = lora.latest_validation.get(model)
        if latest is not None and latest.status == "failed":
            reason = latest.result_message or latest.result_code or "no reason recorded"
            problems.append(("metadata.lora", "lora_validation_failed",
                             (f"LoRA '{lora.name}' failed validation on '{model}': {reason}. Fix the adapter and "
                              f"create it again; GET /v1/loras/{lora.name} shows validations[].result_message.")))
    if problems:
        param, code, _ = problems[0]
        raise BadRequest(" ".join(p[2] for p in problems), param=param, code=code)
