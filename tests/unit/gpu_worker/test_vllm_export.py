"""The adapter a vLLM worker hands to vLLM: our checked weights, rewritten so vLLM applies them exactly.

(vLLM itself is not needed here: the rewrite is plain torch + safetensors; tests/vllm runs it in vLLM.)
"""
import json

import torch
from safetensors.torch import load_file

from services.gpu_worker.adapters.adapter_weights import AdapterWeights, LoraFactors
from services.gpu_worker.engines.vllm_engine.adapter_export import export_for_vllm

PREFIX = "base_model.model.model."
E, HIDDEN, INTER = 3, 8, 5


def weights() -> AdapterWeights:
    g = torch.Generator().manual_seed(0)
    return AdapterWeights({
        "layers.0.self_attn.o_proj": LoraFactors(torch.randn(2, 6, generator=g), torch.randn(HIDDEN, 2, generator=g)),
        # PEFT's fused gate_up at twice the rank, as our loader gives it: [E, 2r, hidden], [E, 2*inter, 2r]
        "layers.1.mlp.experts.gate_up_proj": LoraFactors(torch.randn(E, 4, HIDDEN, generator=g),
                                                         torch.randn(E, 2 * INTER, 4, generator=g)),
        "layers.1.mlp.experts.down_proj": LoraFactors(torch.randn(E, 2, INTER, generator=g),
                                                      torch.randn(E, HIDDEN, 2, generator=g)),
    })


def test_every_module_gets_the_same_delta_at_one_rank_with_scaling_one(tmp_path):
    adapter = weights()
    out = export_for_vllm(adapter, tmp_path / "a", PREFIX)
    config = json.loads((out / "adapter_config.json").read_text())
    tensors = load_file(str(out / "adapter_model.safetensors"))
    assert config["r"] == config["lora_alpha"] == 4  # scaling is baked into lora_B: vLLM's alpha / r is 1
    assert not config.get("rank_pattern") and not config.get("alpha_pattern") and not config["use_rslora"]
    assert sorted(config["target_modules"]) == ["down_proj", "gate_proj", "o_proj", "up_proj"]
    assert {t.shape[0] for k, t in tensors.items() if k.endswith("lora_A.weight")} == {4}

    def delta(module):
        return tensors[f"{PREFIX}{module}.lora_B.weight"] @ tensors[f"{PREFIX}{module}.lora_A.weight"]

    assert torch.allclose(delta("layers.0.self_attn.o_proj"), adapter.factors["layers.0.self_attn.o_proj"].delta())
    gate_up = adapter.factors["layers.1.mlp.experts.gate_up_proj"].delta()  # [E, 2*inter, hidden]
    down = adapter.factors["layers.1.mlp.experts.down_proj"].delta()
    for e in range(E):
        # HF computes gate, up = (x @ gate_up[e].T).chunk(2): stacked halves, not interleaved rows
        assert torch.allclose(delta(f"layers.1.mlp.experts.{e}.gate_proj"), gate_up[e, :INTER])
        assert torch.allclose(delta(f"layers.1.mlp.experts.{e}.up_proj"), gate_up[e, INTER:])
        assert torch.allclose(delta(f"layers.1.mlp.experts.{e}.down_proj"), down[e])


def test_exporting_the_same_adapter_again_keeps_the_first_copy(tmp_path):
    first = export_for_vllm(weights(), tmp_path / "a", PREFIX)
    stamp = (first / "adapter_model.safetensors").stat().st_mtime_ns
    again = export_for_vllm(weights(), tmp_path / "a", PREFIX)
    assert again == first and (again / "adapter_model.safetensors").stat().st_mtime_ns == stamp
    assert not (tmp_path / "a.partial").exists()
