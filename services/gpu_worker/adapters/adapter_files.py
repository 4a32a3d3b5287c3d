"""Read an adapter's two files from local disk and turn them into checked engine weights.

Weights are read as safetensors only, after checking the file and header sizes and every
tensor's dtype from the header. Every problem is reported at once (`AdapterRejected`).
"""
from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from services.gpu_worker.adapters.adapter_layout import convert_adapter
from services.gpu_worker.adapters.adapter_weights import AdapterWeights
from services.gpu_worker.adapters.lora_config import parse_settings
from services.gpu_worker.engines.torch_engine.targets import TargetSpec
from services.gpu_worker.errors import (
    LOAD_FAILED,
    RANK_TOO_LARGE,
    WEIGHTS_NONFINITE,
    AdapterRejected,
    Problem,
)

MAX_CONFIG_BYTES = 1 << 20
MAX_HEADER_BYTES = 16 << 20
FLOAT_DTYPES = {"F32", "F16", "BF16", "F64"}


def read_config(path: Path) -> dict[str, Any]:
    size = path.stat().st_size
    if size > MAX_CONFIG_BYTES:
        raise AdapterRejected([Problem(LOAD_FAILED, f"adapter_config.json is {size} bytes, over {MAX_CONFIG_BYTES}")])
    try:
        config = json.loads(path.read_bytes())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AdapterRejected([Problem(LOAD_FAILED, f"adapter_config.json is not JSON: {exc}")]) from exc
    if not isinstance(config, dict):
        raise AdapterRejected([Problem(LOAD_FAILED, "adapter_config.json is not a JSON object")])
    return config


def read_header(path: Path, max_bytes: int) -> dict[str, Any]:
    size = path.stat().st_size
    if size > max_bytes:
        raise AdapterRejected([Problem(LOAD_FAILED, f"weights file is {size} bytes, over {max_bytes}")])
    with path.open("rb") as handle:
        prefix = handle.read(8)
        if len(prefix) < 8:
            raise AdapterRejected([Problem(LOAD_FAILED, "weights file is not safetensors (too short)")])
        (header_len,) = struct.unpack("<Q", prefix)
        if header_len > min(MAX_HEADER_BYTES, size - 8):
            raise AdapterRejected([Problem(LOAD_FAILED, f"safetensors header length {header_len} is invalid")])
        try:
            header = json.loads(handle.read(header_len))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise AdapterRejected([Problem(LOAD_FAILED, f"safetensors header is not JSON: {exc}")]) from exc
    if not isinstance(header, dict):
        raise AdapterRejected([Problem(LOAD_FAILED, "safetensors header is not a JSON object")])
    return header


def read_tensors(path: Path, max_bytes: int) -> dict[str, torch.Tensor]:
    header = read_header(path, max_bytes)
    bad = [f"{key} has dtype {entry.get('dtype')}" for key, entry in header.items()
           if key != "__metadata__" and (not isinstance(entry, dict) or entry.get("dtype") not in FLOAT_DTYPES)]
    if bad:
        raise AdapterRejected([Problem(LOAD_FAILED, f"non-float tensor: {b}") for b in bad])
    try:
        return load_file(str(path))
    except Exception as exc:  # safetensors raises its own error types for corrupt files
        raise AdapterRejected([Problem(LOAD_FAILED, f"weights file is not valid safetensors: {exc}")]) from exc


def nonfinite_problems(tensors: dict[str, torch.Tensor]) -> list[Problem]:
    return [Problem(WEIGHTS_NONFINITE, f"{key} holds NaN or infinite values")
            for key, tensor in tensors.items() if not bool(torch.isfinite(tensor).all())]


def rank_problems(weights: AdapterWeights, max_rank: int) -> list[Problem]:
    """The limit is per projection: fused gate_up (gate and up side by side) may have twice the rank."""
    problems = []
    for name, factors in weights.factors.items():
        limit = 2 * max_rank if name.endswith(".gate_up_proj") else max_rank
        if factors.rank > limit:
            problems.append(Problem(RANK_TOO_LARGE, f"{name}: rank {factors.rank} exceeds the model's limit {limit}"))
    return problems


def load_adapter(config_path: Path, weights_path: Path, targets: dict[str, TargetSpec], key_prefixes: list[str],
                 max_rank: int, max_weights_bytes: int) -> AdapterWeights:
    """Read, convert and check an adapter; raises `AdapterRejected` listing every problem."""
    settings, problems = parse_settings(read_config(config_path))
    tensors = read_tensors(weights_path, max_weights_bytes)
    problems += nonfinite_problems(tensors)
    if settings is None:
        raise AdapterRejected(problems)
    weights, layout_problems = convert_adapter(settings, tensors, targets, key_prefixes)
    problems += layout_problems
    if weights is not None:
        problems += rank_problems(weights, max_rank)
    if problems:
        # finite-value problems lead: they are the likeliest cause of any shape problem too
        problems.sort(key=lambda p: p.code != WEIGHTS_NONFINITE)
        raise AdapterRejected(problems)
    return weights
