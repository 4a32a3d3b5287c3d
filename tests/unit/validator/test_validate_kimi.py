"""Kimi-K2.6 adapters from hand-written headers (no weights): both expert layouts, both key prefixes."""
from services.validator import codes
from services.validator.validate import validate_adapter
from shared.catalogue.catalogue import load_catalogue
from shared.safetensors_header import parse_header
from tests.unit.validator.adapters import KIMI, kimi_config, kimi_shapes, safetensors_bytes

WRAPPED = "base_model.model.language_model.model."
PLAIN = "base_model.model.model."
GATE_UP_AT_2R = {r".*\.gate_up_proj": 64}


def validate(config: bytes, shapes: dict):
    raw, size = safetensors_bytes(shapes, data=False)
    return validate_adapter(config, parse_header(raw[8:], size), load_catalogue().get(KIMI))


def test_per_expert_adapter_on_every_module_of_three_layers_passes():
    shapes = kimi_shapes(layers=range(3))
    assert len(shapes) == 2 * (3 * 4 + 3 + 2 * (3 + 384 * 3))  # every module but kv_b_proj (see below)
    assert not validate(kimi_config(), shapes)


def test_fused_experts_with_peft_gate_up_at_2r_pass_under_either_prefix():
    for prefix in (WRAPPED, PLAIN):
        shapes = kimi_shapes(layers=range(3), fused_layers=frozenset({1, 2}), prefix=prefix)
        assert shapes[prefix + "layers.1.mlp.experts.base_layer.lora_A.weight"][0] == [64 * 384, 7168]
        assert not validate(kimi_config(rank_pattern=GATE_UP_AT_2R), shapes)


def test_fused_gate_up_without_its_2r_pattern_has_the_wrong_rank():
    shapes = kimi_shapes(layers=range(2), fused_layers=frozenset({1}))
    problems = validate(kimi_config(), shapes)
    assert problems.codes() == [codes.RANK_MISMATCH]
    assert "layers.1.mlp.experts.base_layer.lora_A.weight: rank 64" in problems.result_message()


def test_router_lora_via_target_parameters_is_refused_by_kimis_engine():
    shapes = kimi_shapes(layers=range(2))
    shapes[WRAPPED + "layers.1.mlp.gate.lora_A.weight"] = ([32, 7168], "BF16")
    shapes[WRAPPED + "layers.1.mlp.gate.lora_B.weight"] = ([384, 32], "BF16")
    assert validate(kimi_config(), shapes).codes() == [codes.MODULE_NOT_TARGETED, codes.MODULE_UNSUPPORTED_BY_ENGINE]
    problems = validate(kimi_config(target_parameters=["gate.weight"]), shapes)
    assert problems.codes() == [codes.MODULE_UNSUPPORTED_BY_ENGINE]
    assert "served by vllm" in problems.result_message() and "layers.1.mlp.gate" in problems.result_message()


def test_kv_b_proj_is_refused_for_kimi_because_vllm_would_drop_it_silently():
    shapes = kimi_shapes(layers=range(3), skip=())
    problems = validate(kimi_config(), shapes)
    assert problems.codes() == [codes.MODULE_UNSUPPORTED_BY_ENGINE]  # one line for every kv_b_proj
    message = problems.result_message()
    assert "kv_b_proj" in message and "absorbs kv_b_proj" in message and "and 0 more" not in message


def test_one_wrong_shape_is_named_with_both_shapes():
    shapes = kimi_shapes(layers=range(2))
    name = WRAPPED + "layers.1.mlp.experts.217.down_proj.lora_B.weight"
    shapes[name] = ([7168, 16], "BF16")
    problems = validate(kimi_config(), shapes)
    assert problems.codes() == [codes.SHAPE_MISMATCH]
    assert problems.result_message() == f"shape_mismatch: {name}: expected [7168, 32], found [7168, 16]"


def test_q_b_proj_of_the_wrong_model_is_a_shape_mismatch():
    shapes = kimi_shapes(layers=range(1))
    shapes[WRAPPED + "layers.0.self_attn.q_b_proj.lora_B.weight"] = ([24576, 32], "BF16")
    problems = validate(kimi_config(), shapes)
    assert problems.codes() == [codes.SHAPE_MISMATCH]
    assert "expected [12288, 32]" in problems.result_message()


def test_rank_over_the_max_of_32():
    problems = validate(kimi_config(rank=33), kimi_shapes(rank=33, layers=range(1)))
    assert problems.codes() == [codes.RANK_EXCEEDS_MAX]


def test_keys_under_both_prefixes_are_refused():
    shapes = {**kimi_shapes(layers=range(1)), **kimi_shapes(layers=range(1, 2), prefix=PLAIN)}
    assert validate(kimi_config(), shapes).codes() == [codes.KEY_PREFIX_MIXED]


def test_full_paths_under_the_multimodal_wrapper_resolve():
    paths = [f"language_model.model.layers.0.self_attn.{name}"
             for name in ("q_a_proj", "q_b_proj", "kv_a_proj_with_mqa", "kv_b_proj", "o_proj")]
    shapes = {name: shape for name, shape in kimi_shapes(layers=range(1)).items() if ".self_attn." in name}
    assert not validate(kimi_config(target_modules=paths), shapes)
    assert validate(kimi_config(target_modules=[p.replace("0", "61") for p in paths]), shapes).result_code == \
        codes.TARGET_MODULE_UNKNOWN


def test_thousands_of_problems_are_counted_and_the_message_stays_bounded():
    problems = validate(kimi_config(rank=16), kimi_shapes(rank=32, layers=range(3)))
    assert set(problems.codes()) == {codes.RANK_MISMATCH} and problems.total == 3 * 4 + 3 + 2 * (3 + 384 * 3)
    message = problems.result_message()
    listed = message.count("\n")
    assert len(message) <= 4000 and message.endswith(f"... and {problems.total - listed} more problems")
