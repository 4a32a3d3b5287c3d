"""Adapters for the validator's tests: real ones saved by PEFT on the tiny model, and hand-written
safetensors headers (Kimi-K2.6 size, no weights) whose offsets are consistent.

Tests may import torch and peft; the validator's code never does.
"""
from __future__ import annotations

import functools
import json
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path

from shared.catalogue.catalogue import load_catalogue

TINY = "loraserve/kimi-k2-tiny"
KIMI = "moonshotai/Kimi-K2.6"
DTYPE_BYTES = {"F32": 4, "F16": 2, "BF16": 2, "I32": 4, "U8": 1}


@dataclass(frozen=True)
class AdapterFiles:
    config: bytes
    weights: bytes

    def config_dict(self) -> dict:
        return json.loads(self.config)

    def header(self) -> dict:
        (length,) = struct.unpack("<Q", self.weights[:8])
        return json.loads(self.weights[8:8 + length])


def tiny_model():
    """The tiny DeepseekV3, built the way the catalogue says: config + seed, no download."""
    import torch
    from transformers import DeepseekV3Config, DeepseekV3ForCausalLM

    entry = load_catalogue().get(TINY)
    torch.manual_seed(entry.seed)
    model = DeepseekV3ForCausalLM(DeepseekV3Config(**entry.architecture.hf_config()))
    model.name_or_path = TINY
    return model


def peft_adapter(**lora_kwargs) -> AdapterFiles:
    """Save a real PEFT adapter for the tiny model with `LoraConfig(**lora_kwargs)`."""
    import warnings

    from peft import LoraConfig, get_peft_model

    lora_kwargs.setdefault("task_type", "CAUSAL_LM")
    lora_kwargs.setdefault("base_model_name_or_path", TINY)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        peft_model = get_peft_model(tiny_model(), LoraConfig(**lora_kwargs))
        with tempfile.TemporaryDirectory() as directory:
            peft_model.save_pretrained(directory)
            return AdapterFiles((Path(directory) / "adapter_config.json").read_bytes(),
                                (Path(directory) / "adapter_model.safetensors").read_bytes())


# -- hand-written headers ---------------------------------------------------------------
def safetensors_bytes(shapes: dict[str, tuple[list[int], str]], metadata: dict | None = None,
                      data: bool = True) -> tuple[bytes, int]:
    """A header for `{name: (shape, dtype)}` with contiguous offsets, and the file's full size.

    With `data` the zero-filled buffer follows (small tensors only); without it only the
    8 + N header bytes are returned, to be written over a sparse file of the full size.
    """
    header: dict = {"__metadata__": metadata or {"format": "pt"}}
    offset = 0
    for name, (shape, dtype) in shapes.items():
        size = DTYPE_BYTES[dtype]
        for dim in shape:
            size *= dim
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header, separators=(",", ":")).encode()
    prefix = struct.pack("<Q", len(raw)) + raw
    return (prefix + bytes(offset) if data else prefix), len(prefix) + offset


def with_header(files: AdapterFiles, edit) -> AdapterFiles:
    """The same adapter with its header edited by `edit(shapes)` on `{name: (shape, dtype)}`;
    the offsets are recomputed so the header stays consistent."""
    shapes = {name: (entry["shape"], entry["dtype"]) for name, entry in files.header().items()
              if name != "__metadata__"}
    edit(shapes)
    return AdapterFiles(files.config, safetensors_bytes(shapes)[0])


def with_config(files: AdapterFiles, **changes) -> AdapterFiles:
    config = files.config_dict()
    config.update(changes)
    return AdapterFiles(json.dumps(config).encode(), files.weights)


def kimi_config(rank: int = 32, **changes) -> bytes:
    config = {
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": KIMI, "r": rank,
        "lora_alpha": 2 * rank, "target_modules": ["q_a_proj", "q_b_proj", "kv_a_proj_with_mqa", "kv_b_proj",
                                                   "o_proj", "gate_proj", "up_proj", "down_proj"],
        "target_parameters": None, "rank_pattern": {}, "alpha_pattern": {}, "use_dora": False,
        "modules_to_save": None, "lora_bias": False, "bias": "none",
    }
    config.update(changes)
    return json.dumps(config).encode()


# Kimi-K2.6 is served by vLLM, which applies no LoRA to kv_b_proj (MLA) or the router
VLLM_UNAPPLIED = ("kv_b_proj",)


def kimi_shapes(rank: int = 32, layers: range | None = None, fused_layers: frozenset[int] = frozenset(),
                prefix: str = "base_model.model.language_model.model.", dtype: str = "BF16",
                skip: tuple[str, ...] = VLLM_UNAPPLIED) -> dict[str, tuple[list[int], str]]:
    """LoRA tensors on every module of Kimi-K2.6 its engine applies (per-expert keys; fused keys in
    `fused_layers`); `skip=()` adds kv_b_proj too."""
    shapes = load_catalogue().get(KIMI).shapes
    wanted = range(shapes.arch.num_hidden_layers) if layers is None else layers
    tensors: dict[str, tuple[list[int], str]] = {}
    for module in shapes.iter_modules():
        if module.layer not in wanted or module.group.value == "router" or module.projection in skip:
            continue
        is_fused = module.group.value == "fused_experts"
        if module.group.value in ("expert", "fused_experts") and is_fused != (module.layer in fused_layers):
            continue
        base = prefix + module.path
        if is_fused:  # PEFT's nested ParamWrappers: gate_up inside, down outside
            base = base.rpartition(".")[0] + (".base_layer" if module.projection == "gate_up_proj" else "")
        r = rank * (2 if module.projection == "gate_up_proj" else 1) * module.num_experts
        tensors[f"{base}.lora_A.weight"] = ([r, module.in_features], dtype)
        tensors[f"{base}.lora_B.weight"] = ([module.out_features, r], dtype)
    return tensors


ATTENTION = ["q_a_proj", "q_b_proj", "kv_a_proj_with_mqa", "kv_b_proj", "o_proj"]
RECIPES = {
    "all_linear": {"r": 4, "lora_alpha": 8, "target_modules": "all-linear"},
    "all_linear_max_rank": {"r": 64, "lora_alpha": 64, "target_modules": "all-linear"},  # fused gate_up at 128
    "attention": {"r": 8, "lora_alpha": 16, "target_modules": ATTENTION},
    "regex": {"r": 8, "lora_alpha": 16, "target_modules": r".*\.(q_b_proj|o_proj)"},
    "mlp_and_shared": {"r": 8, "lora_alpha": 16, "target_modules": ["q_a_proj", "gate_proj", "up_proj", "down_proj",
                                                                "shared_experts.gate_proj"]},
    "target_parameters": {"r": 8, "lora_alpha": 16, "target_modules": [],
                              "target_parameters": ["gate_up_proj", "down_proj", "gate.weight"]},
    "gate_up_only": {"r": 8, "lora_alpha": 16, "target_modules": [], "target_parameters": ["gate_up_proj"]},
    "down_only": {"r": 8, "lora_alpha": 16, "target_modules": [], "target_parameters": ["down_proj"]},
    "rank_over_max": {"r": 65, "lora_alpha": 65, "target_modules": ATTENTION},
    "rank_pattern_over_max": {"r": 8, "target_modules": ATTENTION, "rank_pattern": {"q_b_proj": 65}},
    "dora": {"r": 8, "target_modules": ATTENTION, "use_dora": True},
    "lora_bias": {"r": 8, "target_modules": ATTENTION, "lora_bias": True},
    "modules_to_save": {"r": 8, "target_modules": ATTENTION, "modules_to_save": ["lm_head"]},
}


@functools.cache
def recipe(name: str) -> AdapterFiles:
    """A PEFT-saved tiny adapter, made once per test session."""
    return peft_adapter(**RECIPES[name])
