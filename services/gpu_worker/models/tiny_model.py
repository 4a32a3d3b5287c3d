"""Base models built from the catalogue: the tiny DeepseekV3 is made from its config and seed, no download.

`export_model` writes it as an HF checkpoint (config, safetensors, tokenizer with its chat
template) that `AutoModelForCausalLM` / `AutoTokenizer` load and plain transformers + peft train.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from transformers import DeepseekV3Config, DeepseekV3ForCausalLM, GenerationConfig, PreTrainedTokenizerFast

from services.gpu_worker.models.tokenizer import END_OF_TURN, build_tokenizer
from shared.catalogue.catalogue import load_catalogue

TINY_MODEL_ID = "loraserve/kimi-k2-tiny"


class ModelNotBuildable(ValueError):
    """The catalogue entry names a model this process cannot build locally (no seed: weights must be fetched)."""


def catalogue_entry(model_id: str) -> tuple[dict[str, Any], int | None]:
    """(architecture as HF config fields, seed) of a catalogue entry; KeyError for an unknown model."""
    entry = load_catalogue().get(model_id)
    return entry.architecture.hf_config(), entry.seed


def build_config(architecture: dict[str, Any]) -> DeepseekV3Config:
    fields = {k: v for k, v in architecture.items() if k not in ("model_type",)}
    return DeepseekV3Config(**fields)


def build_model(model_id: str = TINY_MODEL_ID, dtype: torch.dtype = torch.float32) -> DeepseekV3ForCausalLM:
    """The model's weights, identical on every call (seeded init; the caller's RNG is left untouched)."""
    architecture, seed = catalogue_entry(model_id)
    if seed is None:
        raise ModelNotBuildable(f"{model_id} has no seed in the catalogue: it is not a locally built model")
    config = build_config(architecture)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = DeepseekV3ForCausalLM(config)
    model.generation_config = generation_config(config)
    return model.to(dtype).eval()


def build_model_tokenizer(model_id: str = TINY_MODEL_ID) -> PreTrainedTokenizerFast:
    return build_tokenizer()


def generation_config(config: DeepseekV3Config) -> GenerationConfig:
    end_of_turn = build_tokenizer().convert_tokens_to_ids(END_OF_TURN)
    return GenerationConfig(
        bos_token_id=config.bos_token_id,
        eos_token_id=[config.eos_token_id, end_of_turn],
        pad_token_id=config.pad_token_id,
        do_sample=False,
    )


def export_model(model_id: str, out_dir: str | Path) -> Path:
    """Write the model as an HF checkpoint directory: config.json, model.safetensors, tokenizer files."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = build_model(model_id)
    model.save_pretrained(out, safe_serialization=True)
    # chat_template inside tokenizer_config.json as well as in chat_template.jinja, for older loaders
    build_model_tokenizer(model_id).save_pretrained(out, save_jinja_files=False)
    return out
