"""Reading adapters: every layout converted exactly, every problem reported at once."""
import json
import warnings

import pytest
import torch
from peft import PeftModel

from services.gpu_worker.adapters.adapter_files import load_adapter
from services.gpu_worker.engines.torch_engine.targets import discover_targets
from services.gpu_worker.errors import AdapterRejected
from services.gpu_worker.models.tiny_model import build_model
from tests.unit.gpu_worker.support import PREFIX, write_adapter

TARGETS = discover_targets(build_model())


def load(directory, max_rank=64, max_bytes=1 << 30):
    return load_adapter(directory / "adapter_config.json", directory / "adapter_model.safetensors", TARGETS, [PREFIX],
                        max_rank, max_bytes)


def test_peft_fused_experts_and_router_match_peft_own_deltas(adapter_dirs):
    weights = load(adapter_dirs["peft_all_linear"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        peft = PeftModel.from_pretrained(build_model(), adapter_dirs["peft_all_linear"])
    moe = peft.base_model.model.model.layers[1].mlp
    expected = {
        "layers.1.mlp.experts.gate_up_proj": moe.experts.base_layer.get_delta_weight("default"),
        "layers.1.mlp.experts.down_proj": moe.experts.get_delta_weight("default"),
        "layers.1.mlp.gate": moe.gate.get_delta_weight("default"),
        "layers.2.self_attn.kv_b_proj": peft.base_model.model.model.layers[2].self_attn.kv_b_proj
        .get_delta_weight("default"),
    }
    for name, delta in expected.items():
        torch.testing.assert_close(weights.factors[name].delta(), delta.detach(), atol=1e-6, rtol=1e-5)
    assert weights.factors["layers.1.mlp.experts.gate_up_proj"].rank == 8  # PEFT's rank_pattern: 2r


def test_per_expert_keys_fuse_into_gate_up_as_the_weight_stacks_them(adapter_dirs):
    weights = load(adapter_dirs["per_expert"])
    config = json.loads((adapter_dirs["per_expert"] / "adapter_config.json").read_text())
    from safetensors.torch import load_file
    tensors = load_file(str(adapter_dirs["per_expert"] / "adapter_model.safetensors"))
    scaling = config["lora_alpha"] / config["r"]
    key = PREFIX + "layers.2.mlp.experts.3.{}.lora_{}.weight"
    gate = scaling * tensors[key.format("gate_proj", "B")] @ tensors[key.format("gate_proj", "A")]
    up = scaling * tensors[key.format("up_proj", "B")] @ tensors[key.format("up_proj", "A")]
    fused = weights.factors["layers.2.mlp.experts.gate_up_proj"].delta()
    torch.testing.assert_close(fused[3], torch.cat([gate, up]))
    assert fused[2].abs().max() == 0  # an expert the adapter does not touch gets nothing
    assert fused[6][32:].abs().max() == 0  # expert 6 adapts gate_proj only


def test_every_problem_is_reported_with_nonfinite_first(tmp_path):
    a, b = torch.randn(4, 64), torch.randn(32, 4)
    b[0, 0] = float("inf")
    tensors = {
        PREFIX + "layers.0.self_attn.q_a_proj.lora_A.weight": a,
        PREFIX + "layers.0.self_attn.q_a_proj.lora_B.weight": b,
        PREFIX + "layers.0.self_attn.o_proj.lora_A.weight": torch.randn(4, 63),  # wrong in_features
        PREFIX + "layers.0.self_attn.o_proj.lora_B.weight": torch.randn(64, 4),
        PREFIX + "layers.0.self_attn.kv_b_proj.lora_A.weight": torch.randn(4, 16),  # no lora_B
        PREFIX + "layers.0.lm_head.lora_A.weight": torch.randn(4, 64),  # not an adaptable module
        PREFIX + "layers.0.lm_head.lora_B.weight": torch.randn(300, 4),
    }
    with pytest.raises(AdapterRejected) as caught:
        load(write_adapter(tmp_path, tensors, {"r": 4}))
    assert caught.value.code == "weights_nonfinite"
    message = caught.value.message
    for fragment in ("q_a_proj.lora_B.weight holds NaN", "o_proj", "kv_b_proj has lora_A only", "lm_head"):
        assert fragment in message


def test_rank_above_the_model_limit_is_refused(tmp_path):
    tensors = {PREFIX + "layers.0.self_attn.o_proj.lora_A.weight": torch.randn(8, 64),
               PREFIX + "layers.0.self_attn.o_proj.lora_B.weight": torch.randn(64, 8)}
    with pytest.raises(AdapterRejected) as caught:
        load(write_adapter(tmp_path, tensors, {"r": 8}), max_rank=4)
    assert caught.value.code == "rank_too_large"


@pytest.mark.parametrize("config, fragment", [
    ({"r": 4, "use_dora": True}, "DoRA"),
    ({"r": 8}, "adapter_config says 8"),
    ({"r": 4, "peft_type": "IA3"}, "peft_type"),
])
def test_configs_the_engine_cannot_apply_are_refused(tmp_path, config, fragment):
    tensors = {PREFIX + "layers.0.self_attn.o_proj.lora_A.weight": torch.randn(4, 64),
               PREFIX + "layers.0.self_attn.o_proj.lora_B.weight": torch.randn(64, 4)}
    with pytest.raises(AdapterRejected) as caught:
        load(write_adapter(tmp_path, tensors, config))
    assert caught.value.code == "load_failed" and fragment in caught.value.message


def test_files_that_are_not_safetensors_or_too_large_are_refused(tmp_path, adapter_dirs):
    (tmp_path / "adapter_config.json").write_text(json.dumps({"r": 4, "lora_alpha": 8}))
    (tmp_path / "adapter_model.safetensors").write_bytes(b"\x80\x04pickle-ish bytes" * 4)
    with pytest.raises(AdapterRejected) as caught:
        load(tmp_path)
    assert caught.value.code == "load_failed"
    with pytest.raises(AdapterRejected) as caught:
        load(adapter_dirs["explicit_linears"], max_bytes=1000)
    assert "over 1000" in caught.value.message
