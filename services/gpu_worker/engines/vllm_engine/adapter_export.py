"""Our checked adapter, rewritten as the plain PEFT checkpoint vLLM applies exactly.

vLLM is never handed the uploaded files: their `rank_pattern`/`alpha_pattern` would be matched
with Python's `re` and scaled by vLLM's own rules, and PEFT's fused-expert layout would go through
vLLM's layout guessing. We write what our loader already checked and converted instead: every
module's scaling baked into lora_B (so `lora_alpha == r`, scaling 1), every factor zero-padded to
one rank (exact: the padded rows of A meet zero columns of B), an explicit module list, no
patterns, and the routed experts in the per-expert layout vLLM's DeepSeek uses, with the fused
gate_up split into its stacked halves (HF's experts compute `gate, up = (x @ W.T).chunk(2)`).
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
from safetensors.torch import save_file

from services.gpu_worker.adapters.adapter_weights import AdapterWeights, LoraFactors

CONFIG_NAME = "adapter_config.json"
WEIGHTS_NAME = "adapter_model.safetensors"


def _padded(factors: LoraFactors, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    missing = rank - factors.rank
    if missing == 0:
        return factors.a, factors.b
    a = torch.nn.functional.pad(factors.a, (0, 0, 0, missing))  # rows of A: [..., r, in]
    b = torch.nn.functional.pad(factors.b, (0, missing))  # columns of B: [..., out, r]
    return a, b


def _module_tensors(target: str, factors: LoraFactors, rank: int) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """`layers.{i}.{path}` -> {module path: (A, B)}, experts split per expert."""
    a, b = _padded(factors, rank)
    if a.dim() == 2:
        return {target: (a, b)}
    container, param = target.rsplit(".", 1)  # layers.{i}.mlp.experts, gate_up_proj | down_proj
    modules = {}
    for expert in range(a.shape[0]):
        if param == "gate_up_proj":
            half = b.shape[1] // 2
            modules[f"{container}.{expert}.gate_proj"] = (a[expert], b[expert, :half])
            modules[f"{container}.{expert}.up_proj"] = (a[expert], b[expert, half:])
        else:
            modules[f"{container}.{expert}.{param}"] = (a[expert], b[expert])
    return modules


def export_for_vllm(weights: AdapterWeights, out_dir: Path, key_prefix: str) -> Path:
    """Write the adapter under `out_dir` (created; written atomically) with keys `key_prefix + module`."""
    rank = weights.max_rank()
    tensors: dict[str, torch.Tensor] = {}
    leaf_names: set[str] = set()
    for target, factors in weights.factors.items():
        for module, (a, b) in _module_tensors(target, factors, rank).items():
            # copies: gate and up share one A, and slices share their expert tensor's storage
            tensors[f"{key_prefix}{module}.lora_A.weight"] = a.clone(memory_format=torch.contiguous_format)
            tensors[f"{key_prefix}{module}.lora_B.weight"] = b.clone(memory_format=torch.contiguous_format)
            leaf_names.add(module.rsplit(".", 1)[-1])
    config = {
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "r": rank, "lora_alpha": rank,
        "target_modules": sorted(leaf_names), "bias": "none", "use_rslora": False, "use_dora": False,
        "lora_dropout": 0.0, "modules_to_save": None, "fan_in_fan_out": False,
    }
    partial = out_dir.with_name(out_dir.name + ".partial")
    partial.mkdir(parents=True, exist_ok=True, mode=0o700)
    save_file(tensors, str(partial / WEIGHTS_NAME), metadata={"format": "pt"})
    (partial / CONFIG_NAME).write_text(json.dumps(config))
    if out_dir.exists():  # exported before: the directory is named by the adapter's immutable files
        shutil.rmtree(partial)
    else:
        os.replace(partial, out_dir)
    return out_dir
