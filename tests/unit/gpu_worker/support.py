"""Adapters of every layout a user brings, and an independent float64 reference for them.

The reference merges each tensor straight into a float64 copy of the base weights, written
from the key names alone (not with the engine's conversion code), so the engine's layout
handling is checked against arithmetic, and against PEFT where PEFT applies every tensor.
"""
from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import torch
from peft import LoraConfig, get_peft_model
from safetensors.torch import save_file

from services.gpu_worker.models.tiny_model import build_model

PREFIX = "base_model.model.model."
ATTENTION = ["q_a_proj", "q_b_proj", "kv_a_proj_with_mqa", "kv_b_proj", "o_proj"]


def peft_all_linear(out_dir: Path, rank: int = 4, seed: int = 0, scale: float = 1.0) -> Path:
    """What PEFT saves for target_modules="all-linear": attention Linears + fused experts + router."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = get_peft_model(build_model(), LoraConfig(r=rank, lora_alpha=2 * rank, target_modules="all-linear",
                                                             init_lora_weights=False))
        with torch.no_grad():
            for name, param in model.named_parameters():
                if "lora_B" in name:
                    param.mul_(scale)
    model.save_pretrained(out_dir)
    return out_dir


def write_adapter(out_dir: Path, tensors: dict[str, torch.Tensor], config: dict) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    full = {"peft_type": "LORA", "lora_alpha": config.get("r", 4) * 2, "target_modules": [], **config}
    (out_dir / "adapter_config.json").write_text(json.dumps(full))
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(out_dir / "adapter_model.safetensors"),
              metadata={"format": "pt"})
    return out_dir


def _pair(generator, out_features: int, in_features: int, rank: int, scale: float) -> tuple[torch.Tensor, ...]:
    a = torch.randn(rank, in_features, generator=generator) * scale
    b = torch.randn(out_features, rank, generator=generator) * scale
    return a, b


def explicit_linears(out_dir: Path, rank: int = 4, seed: int = 1, scale: float = 0.3) -> Path:
    """Attention, dense-MLP and shared-expert Linears (PEFT itself drops the last two on this model)."""
    model, generator, tensors = build_model(), torch.Generator().manual_seed(seed), {}
    for index, layer in enumerate(model.model.layers):
        modules = {f"self_attn.{n}": getattr(layer.self_attn, n) for n in ATTENTION}
        mlp = layer.mlp.shared_experts if hasattr(layer.mlp, "shared_experts") else layer.mlp
        prefix = "mlp.shared_experts" if hasattr(layer.mlp, "shared_experts") else "mlp"
        modules |= {f"{prefix}.{n}": getattr(mlp, n) for n in ("gate_proj", "up_proj", "down_proj")}
        for path, linear in modules.items():
            a, b = _pair(generator, linear.out_features, linear.in_features, rank, scale)
            tensors[f"{PREFIX}layers.{index}.{path}.lora_A.weight"] = a
            tensors[f"{PREFIX}layers.{index}.{path}.lora_B.weight"] = b
    targets = [*ATTENTION, "gate_proj", "up_proj", "down_proj"]
    return write_adapter(out_dir, tensors, {"r": rank, "lora_alpha": 2 * rank, "target_modules": targets})


def per_expert(out_dir: Path, rank: int = 4, seed: int = 2, scale: float = 0.3, experts: tuple[int, ...] = (0, 1, 3, 6),
               nan: bool = False) -> Path:
    """Per-expert Linear keys (Kimi's own modeling code), plus the attention and shared experts."""
    model, generator, tensors = build_model(), torch.Generator().manual_seed(seed), {}
    config = model.config
    hidden, inter = config.hidden_size, config.moe_intermediate_size
    for index in range(config.first_k_dense_replace, config.num_hidden_layers):
        for expert in experts:
            for proj, (out_f, in_f) in {"gate_proj": (inter, hidden), "up_proj": (inter, hidden),
                                        "down_proj": (hidden, inter)}.items():
                if expert == 6 and proj == "up_proj":
                    continue  # an expert with only some projections adapted
                a, b = _pair(generator, out_f, in_f, rank, scale)
                tensors[f"{PREFIX}layers.{index}.mlp.experts.{expert}.{proj}.lora_A.weight"] = a
                tensors[f"{PREFIX}layers.{index}.mlp.experts.{expert}.{proj}.lora_B.weight"] = b
        o_proj = model.model.layers[index].self_attn.o_proj
        a, b = _pair(generator, o_proj.out_features, o_proj.in_features, rank, scale)
        tensors[f"{PREFIX}layers.{index}.self_attn.o_proj.lora_A.weight"] = a
        tensors[f"{PREFIX}layers.{index}.self_attn.o_proj.lora_B.weight"] = b
    if nan:
        next(iter(tensors.values()))[0, 0] = float("nan")
    return write_adapter(out_dir, tensors, {"r": rank, "lora_alpha": 2 * rank,
                                            "target_modules": ["gate_proj", "up_proj", "down_proj", "o_proj"]})


# -- the float64 reference ---------------------------------------------------------------
_KEY = re.compile(r"^layers\.(\d+)\.(.+)\.lora_A\.weight$")


def _scaling(config: dict, name: str) -> float:
    rank, alpha = config["r"], config.get("lora_alpha", config["r"])
    for pattern, value in (config.get("rank_pattern") or {}).items():
        if re.match(rf"(.*\.)?({pattern})$", name):
            rank = value
    for pattern, value in (config.get("alpha_pattern") or {}).items():
        if re.match(rf"(.*\.)?({pattern})$", name):
            alpha = value
    return alpha / rank


def merged_reference(adapter_dir: Path | None) -> torch.nn.Module:
    """The base model in float64 with every tensor of the adapter merged into the weights it names."""
    from safetensors.torch import load_file

    model = build_model()
    model.set_experts_implementation("eager")  # grouped_mm has no float64 kernel
    model = model.to(torch.float64)
    if adapter_dir is None:
        return model
    config = json.loads((adapter_dir / "adapter_config.json").read_text())
    tensors = load_file(str(adapter_dir / "adapter_model.safetensors"))
    with torch.no_grad():
        for key, a in tensors.items():
            match = _KEY.match(key.removeprefix(PREFIX))
            if match is None:
                continue
            b = tensors[key.replace("lora_A", "lora_B")].double()
            layer, path = model.model.layers[int(match[1])], match[2]
            _merge(layer, path, a.double(), b, config, f"model.layers.{match[1]}.{path}")
    return model


def _merge(layer, path: str, a, b, config, full_name: str) -> None:
    expert = re.match(r"^mlp\.experts\.(\d+)\.(gate_proj|up_proj|down_proj)$", path)
    if expert:
        e, proj = int(expert[1]), expert[2]
        experts = layer.mlp.experts
        inter = experts.down_proj.shape[-1]
        delta = _scaling(config, full_name) * (b @ a)
        if proj == "down_proj":
            experts.down_proj[e] += delta
        else:
            rows = slice(0, inter) if proj == "gate_proj" else slice(inter, 2 * inter)
            experts.gate_up_proj[e, rows] += delta
        return
    layer.get_submodule(path).weight += _scaling(config, full_name) * (b @ a)
