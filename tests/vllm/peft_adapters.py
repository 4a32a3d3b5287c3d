"""Adapters for the vLLM tests (random, fixed seed) on the exported test models, and the reference
greedy output vLLM's must equal: PEFT's own, or for dense-MLP adapters (which PEFT 0.21 cannot make
or load on transformers-5 DeepSeek-V3: it remaps gate/up/down_proj to the fused experts) the base
model with each module's `scaling * B @ A` merged into its weight."""
from __future__ import annotations

import json
from pathlib import Path

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM, AutoTokenizer

ATTENTION = ["q_a_proj", "q_b_proj", "kv_a_proj_with_mqa", "o_proj"]
DENSE_MLP = ["gate_proj", "up_proj", "down_proj"]

# name -> LoraConfig arguments; each adapter differs, so a mixed batch shows any row served the wrong one
CONFIGS = {
    "attention-r8": {"r": 8, "lora_alpha": 16, "target_modules": ATTENTION},
    # per-module ranks and alphas: vLLM gets them baked into lora_B, PEFT applies them itself
    "patterns": {"r": 4, "lora_alpha": 8, "target_modules": ATTENTION,
                 "rank_pattern": {"o_proj": 12, "q_a_proj": 2}, "alpha_pattern": {"q_b_proj": 3.0, "o_proj": 24}},
    "rslora-r16": {"r": 16, "lora_alpha": 8, "use_rslora": True, "target_modules": ["q_b_proj", "o_proj"]},
    "kv-b": {"r": 8, "lora_alpha": 16, "target_modules": ["kv_b_proj", "o_proj"]},
}


# written by hand in PEFT's format: name -> (r, lora_alpha, modules)
MANUAL = {"mlp-r4": (4, 8, DENSE_MLP)}


def make_adapter(model_dir: Path, name: str, out: Path, seed: int) -> Path:
    if name in MANUAL:
        return _manual_adapter(model_dir, name, out, seed)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    torch.manual_seed(seed)
    peft_model = get_peft_model(model, LoraConfig(init_lora_weights=False, **CONFIGS[name]))
    with torch.no_grad():  # PEFT's random init is small next to the tiny model's weights: make it matter
        for param_name, param in peft_model.named_parameters():
            if "lora_B" in param_name:
                param.mul_(4.0)
    peft_model.save_pretrained(out)
    return out


def _manual_adapter(model_dir: Path, name: str, out: Path, seed: int) -> Path:
    rank, alpha, modules = MANUAL[name]
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    generator = torch.Generator().manual_seed(seed)
    tensors = {}
    for module_name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and module_name.rsplit(".", 1)[-1] in modules \
                and ".layers." in module_name:
            key = f"base_model.model.{module_name}"
            tensors[f"{key}.lora_A.weight"] = torch.randn(rank, module.in_features, generator=generator) * 0.2
            tensors[f"{key}.lora_B.weight"] = torch.randn(module.out_features, rank, generator=generator) * 0.2
    out.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out / "adapter_model.safetensors"), metadata={"format": "pt"})
    config = {"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": rank, "lora_alpha": alpha,
              "target_modules": modules, "bias": "none"}
    (out / "adapter_config.json").write_text(json.dumps(config))
    return out


def _merged(model, adapter_dir: Path):
    config = json.loads((adapter_dir / "adapter_config.json").read_text())
    scaling = config["lora_alpha"] / config["r"]
    tensors = load_file(str(adapter_dir / "adapter_model.safetensors"))
    modules = dict(model.named_modules())
    with torch.no_grad():
        for key, a in tensors.items():
            if key.endswith(".lora_A.weight"):
                name = key.removeprefix("base_model.model.").removesuffix(".lora_A.weight")
                b = tensors[key.replace("lora_A", "lora_B")]
                modules[name].weight += scaling * (b.double() @ a.double()).float()
    return model


def peft_greedy(model_dir: Path, adapter_dir: Path | None, prompt_ids: list[int],
                max_tokens: int) -> tuple[str, int]:
    """(text, number of tokens generated) of the reference's greedy decode, stopping at its EOS tokens."""
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    if adapter_dir is not None and adapter_dir.name in MANUAL:
        model = _merged(model, adapter_dir)
    elif adapter_dir is not None:
        model = PeftModel.from_pretrained(model, adapter_dir).eval()
    with torch.no_grad():
        out = model.generate(torch.tensor([prompt_ids]), max_new_tokens=max_tokens, do_sample=False)
    generated = out[0, len(prompt_ids):].tolist()
    stops = model.generation_config.eos_token_id
    stops = set(stops if isinstance(stops, list) else [stops])
    counted = next((i + 1 for i, token in enumerate(generated) if token in stops), len(generated))
    return tokenizer.decode(generated, skip_special_tokens=True), counted
