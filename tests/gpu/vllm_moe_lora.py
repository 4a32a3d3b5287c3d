"""The MoE LoRA path through vLLM, on a GPU (vLLM's fused-MoE LoRA kernels are Triton, GPU only).

Run on a lent GPU machine as one command, from the repository root, in an environment with the
official CUDA `vllm` (the GPU image, or `pip install vllm==0.32.0` beside the project):

    python -m tests.gpu.vllm_moe_lora            # prints one JSON line; exit status 1 on a mismatch

The model is tests/vllm/models.json's MoE DeepSeek-V3 (seeded, no download). Adapters, each served
through our worker's path (checked, rewritten per expert with scaling baked in, handed to vLLM):
  - fused: PEFT's fused-expert layout (`target_parameters` gate_up_proj/down_proj, gate_up at 2r),
    with attention modules and a rank_pattern;
  - per-expert: the old per-expert layout (`mlp.experts.{e}.gate_proj/up_proj/down_proj`) and the
    shared experts, written by hand;
  - router: an adapter on the router (`mlp.gate`) must be refused (vLLM applies none).
Each adapter's greedy tokens must equal the float64 reference (the adapter merged into the weights);
the base model's too, in one mixed batch with all adapters.
"""
from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
import uuid
from pathlib import Path

import torch

CATALOGUE = Path(__file__).resolve().parents[1] / "vllm" / "models.json"
MODEL = "loraserve-test/dsv3-moe"
PROMPTS = ["Hello there", "What is a LoRA?"]
MAX_TOKENS = 16


def _per_expert_adapter(model, out: Path, rank: int = 4) -> Path:
    from safetensors.torch import save_file

    generator = torch.Generator().manual_seed(5)
    tensors = {}
    config = model.config
    for layer in range(config.first_k_dense_replace, config.num_hidden_layers):
        base = f"base_model.model.model.layers.{layer}.mlp"
        shapes = {"gate_proj": (config.moe_intermediate_size, config.hidden_size),
                  "up_proj": (config.moe_intermediate_size, config.hidden_size),
                  "down_proj": (config.hidden_size, config.moe_intermediate_size)}
        modules = [f"experts.{e}" for e in range(config.n_routed_experts)] + ["shared_experts"]
        for module in modules:
            for projection, (out_features, in_features) in shapes.items():
                if module == "shared_experts":
                    out_features = out_features * config.n_shared_experts if projection != "down_proj" else out_features
                    in_features = in_features * config.n_shared_experts if projection == "down_proj" else in_features
                key = f"{base}.{module}.{projection}"
                tensors[f"{key}.lora_A.weight"] = torch.randn(rank, in_features, generator=generator) * 0.3
                tensors[f"{key}.lora_B.weight"] = torch.randn(out_features, rank, generator=generator) * 0.3
    out.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out / "adapter_model.safetensors"), metadata={"format": "pt"})
    (out / "adapter_config.json").write_text(json.dumps({
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "r": rank, "lora_alpha": 2 * rank,
        "target_modules": ["gate_proj", "up_proj", "down_proj"]}))
    return out


def _fused_adapter(model_dir: Path, out: Path) -> Path:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    torch.manual_seed(3)
    config = LoraConfig(r=4, lora_alpha=8, init_lora_weights=False, target_modules=["q_b_proj", "o_proj"],
                        target_parameters=["gate_up_proj", "down_proj"], rank_pattern={"o_proj": 8})
    peft_model = get_peft_model(model, config)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.mul_(4.0)
    peft_model.save_pretrained(out)
    return out


def _reference(model_dir: Path, weights, prompt_ids: list[int]) -> list[int]:
    """Greedy tokens of the base model with our checked adapter (scaling folded) merged, in float64."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float64).eval()
    params = dict(model.named_parameters())
    modules = dict(model.named_modules())
    with torch.no_grad():
        for target, factors in (weights.factors.items() if weights else []):
            delta = (factors.b.double() @ factors.a.double())
            name = f"model.{target}"
            if name in params:  # fused experts: [E, out, in]
                params[name] += delta
            else:
                modules[name].weight += delta
        out = model.generate(torch.tensor([prompt_ids]), max_new_tokens=MAX_TOKENS, do_sample=False)
    return out[0, len(prompt_ids):].tolist()


async def _run(root: Path) -> dict:
    from transformers import AutoModelForCausalLM

    from services.gpu_worker.adapters.adapter_files import load_adapter
    from services.gpu_worker.engines.torch_engine.sampling import SamplingSpec
    from services.gpu_worker.engines.torch_engine.sequence import GenerationRequest
    from services.gpu_worker.engines.vllm_engine.engine import VllmEngine
    from services.gpu_worker.engines.vllm_engine.model_dir import VllmOptions, model_directory
    from shared.catalogue.catalogue import load_catalogue

    entry = load_catalogue().get(MODEL)
    options = VllmOptions(slots=4, cpu_adapters=6, max_batch=8, data_dir=root)
    model_dir = model_directory(entry, options)
    hf_model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    dirs = {"fused": _fused_adapter(model_dir, root / "fused"), "per-expert": _per_expert_adapter(hf_model, root / "pe")}
    engine = VllmEngine(entry, options)
    await engine.start()
    report: dict = {"device": torch.cuda.get_device_name(0), "lora_enabled": engine.lora_enabled, "cases": {}}
    try:
        adapters = {name: engine.read_adapter(f"{name}:{uuid.uuid4().hex[:6]}", d / "adapter_config.json",
                                              d / "adapter_model.safetensors", 1 << 30) for name, d in dirs.items()}
        checked = {name: load_adapter(d / "adapter_config.json", d / "adapter_model.safetensors", engine.targets,
                                      list(entry.key_prefixes), entry.max_rank, 1 << 30) for name, d in dirs.items()}
        jobs = [(name, prompt) for prompt in PROMPTS for name in [*adapters, None]]

        async def tokens(name, prompt):
            prompt_ids = engine.chat_prompt([{"role": "user", "content": prompt}])
            request = GenerationRequest(request_id=uuid.uuid4().hex, prompt=prompt_ids, max_tokens=MAX_TOKENS,
                                        sampling=SamplingSpec(temperature=0.0), adapter=adapters.get(name),
                                        adapter_key=adapters[name].key if name else None)
            final = [u async for u in engine.generate(request)][-1]
            return prompt_ids, final

        results = await asyncio.gather(*(tokens(n, p) for n, p in jobs))
        for (name, prompt), (prompt_ids, final) in zip(jobs, results):
            expected = _reference(model_dir, checked.get(name), prompt_ids)
            text = engine.tokenizer.decode(expected, skip_special_tokens=True)
            same = final.output_text.rstrip("\ufffd") == text.rstrip("\ufffd")
            report["cases"][f"{name or 'base'}|{prompt}"] = {"equal": same, "tokens": final.completion_tokens}
        router_dir = root / "router"
        router_dir.mkdir()
        report["router_refused"] = _router_refused(engine, hf_model, router_dir)
    finally:
        await engine.stop()
    report["ok"] = all(c["equal"] for c in report["cases"].values()) and report["router_refused"] is True
    return report


def _router_refused(engine, hf_model, out: Path) -> bool:
    from safetensors.torch import save_file

    from services.gpu_worker.errors import AdapterRejected

    layer = hf_model.config.first_k_dense_replace
    experts, hidden = hf_model.config.n_routed_experts, hf_model.config.hidden_size
    key = f"base_model.model.model.layers.{layer}.mlp.gate"
    save_file({f"{key}.lora_A.weight": torch.randn(4, hidden), f"{key}.lora_B.weight": torch.randn(experts, 4)},
              str(out / "adapter_model.safetensors"), metadata={"format": "pt"})
    (out / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 4, "lora_alpha": 4,
                                                         "target_modules": [], "target_parameters": ["gate.weight"]}))
    try:
        engine.read_adapter("router:2", out / "adapter_config.json", out / "adapter_model.safetensors", 1 << 30)
    except AdapterRejected as exc:
        return exc.code == "module_unsupported_by_engine"
    return False


def main() -> None:
    os.environ["LORASERVE_CATALOGUE_FILE"] = str(CATALOGUE)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if not torch.cuda.is_available():
        raise SystemExit("tests/gpu/vllm_moe_lora.py needs a GPU (vLLM's MoE LoRA kernels are GPU only)")
    with tempfile.TemporaryDirectory() as root:
        report = asyncio.run(_run(Path(root)))
    print(json.dumps(report), flush=True)
    sys.exit(0 if report["ok"] else 1)


if __name__ == "__main__":
    main()
