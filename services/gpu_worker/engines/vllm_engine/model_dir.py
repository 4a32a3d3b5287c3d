"""The directory vLLM loads a catalogue model from, and the engine arguments for it.

A model with weights on a volume (`engine.model_path`) is loaded from there; a test model the
catalogue builds from its seed is exported once into the data dir as an HF checkpoint, with the
config fields vLLM's DeepSeek loader requires (it reads `topk_method`/`scoring_func`).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.catalogue.catalogue import ModelEntry
from shared.catalogue.engines import vllm_lora_rank

GiB = 1024**3
VLLM_CONFIG_DEFAULTS = {"topk_method": "noaux_tc", "scoring_func": "sigmoid"}


@dataclass(frozen=True)
class VllmOptions:
    slots: int = 8  # adapters on the device at once (vLLM's max_loras)
    cpu_adapters: int = 32  # adapters held by vLLM in CPU memory (max_cpu_loras)
    max_batch: int = 16  # sequences per step (max_num_seqs)
    # the KV cache on a CPU host: 2 GiB leaves room for the engine and the rest of a 24 GiB machine
    cpu_kv_cache_bytes: int = 2 * GiB
    model_path: Path | None = None  # overrides the catalogue's engine.model_path
    data_dir: Path = Path(".loraserve")


def model_directory(entry: ModelEntry, options: VllmOptions) -> Path:
    path = options.model_path or (Path(entry.engine.model_path) if entry.engine.model_path else None)
    if path is not None:
        if not (path / "config.json").is_file():
            raise SystemExit(f"{entry.id}: no config.json under the model path {path} (mount the weights there)")
        return path
    if entry.seed is None:
        raise SystemExit(f"{entry.id} names no model_path and no seed: there are no weights to serve")
    return export_seeded(entry, options.data_dir / "models" / entry.slug)


def export_seeded(entry: ModelEntry, out: Path) -> Path:
    from services.gpu_worker.models.tiny_model import export_model  # torch + transformers: the worker only

    marker = out / ".complete"
    if marker.is_file() and marker.read_text() == entry.model_dump_json():
        return out
    export_model(entry.id, out)
    config_path = out / "config.json"
    config = json.loads(config_path.read_text())
    config.update({k: v for k, v in VLLM_CONFIG_DEFAULTS.items() if k not in config})
    config_path.write_text(json.dumps(config, indent=2))
    marker.write_text(entry.model_dump_json())
    return out


def engine_arguments(entry: ModelEntry, model_dir: Path, options: VllmOptions, on_cpu: bool) -> dict[str, Any]:
    spec = entry.engine
    args: dict[str, Any] = {
        "model": str(model_dir), "tokenizer": str(model_dir), "dtype": spec.dtype,
        "tensor_parallel_size": spec.tensor_parallel_size, "pipeline_parallel_size": spec.pipeline_parallel_size,
        "enable_expert_parallel": spec.enable_expert_parallel, "max_num_seqs": options.max_batch,
        "max_model_len": spec.max_model_len or entry.architecture.max_position_embeddings,
        "enable_lora": lora_enabled(entry, on_cpu), "seed": 0,
    }
    if spec.quantization:
        args["quantization"] = spec.quantization
    if args["enable_lora"]:
        # vLLM's CPU LoRA ops index the slots with the row's slot number and -1 for "no adapter", which
        # picks the last slot: a base row beside a full set of slots was served the last slot's adapter
        # (measured on 0.32). On a CPU one slot more than we ever fill stays empty (registered_capacity).
        slots = options.slots + 1 if on_cpu else options.slots
        args.update(max_loras=slots, max_cpu_loras=max(options.cpu_adapters, slots + 1),
                    max_lora_rank=vllm_lora_rank(spec.max_lora_rank or entry.max_rank))
    if on_cpu:
        # the settings FACTS.md found to match transformers on this CPU (MLA latent 512 + rope 64)
        args.update(kv_cache_memory_bytes=options.cpu_kv_cache_bytes, enforce_eager=True,
                    attention_backend="CPU_MLA", compilation_config={"custom_ops": ["all", "-rotary_embedding"]})
    args.update(spec.extra_args)
    return args


def registered_capacity(arguments: dict[str, Any], on_cpu: bool) -> int:
    """How many adapters we keep registered with vLLM: one fewer than its CPU cache (load before evict),
    and on a CPU no more than its slots less the one kept empty."""
    if not arguments.get("enable_lora"):
        return 0
    capacity = arguments["max_cpu_loras"] - 1
    return min(capacity, arguments["max_loras"] - 1) if on_cpu else capacity


def has_moe_layers(entry: ModelEntry) -> bool:
    arch = entry.architecture
    return arch.n_routed_experts > 0 and arch.first_k_dense_replace < arch.num_hidden_layers


def lora_enabled(entry: ModelEntry, on_cpu: bool) -> bool:
    """vLLM's fused-MoE LoRA kernels are Triton (GPU) only: on a CPU an MoE model serves no adapters."""
    return not (on_cpu and has_moe_layers(entry))
