"""Adapters saved by PEFT itself on the tiny model: the good ones pass, each bad one gets its code."""
import json

import pytest

from services.validator import codes
from services.validator.validate import validate_adapter
from shared.catalogue.catalogue import load_catalogue
from shared.safetensors_header import parse_bytes
from tests.unit.validator.adapters import TINY, AdapterFiles, recipe, with_config, with_header

PREFIX = "base_model.model.model."


def validate(files: AdapterFiles):
    return validate_adapter(files.config, parse_bytes(files.weights), load_catalogue().get(TINY))


@pytest.mark.parametrize("name", ["all_linear", "attention", "regex", "mlp_and_shared", "target_parameters",
                                  "gate_up_only", "down_only"])
def test_peft_adapters_pass(name):
    problems = validate(recipe(name))
    assert not problems, problems.result_message()


def test_all_linear_holds_what_facts_md_says_peft_saves():
    files = recipe("all_linear")
    config, header = files.config_dict(), files.header()
    assert sorted(config["target_modules"]) == sorted(["q_a_proj", "q_b_proj", "kv_a_proj_with_mqa", "kv_b_proj",
                                                       "o_proj"])
    assert sorted(config["target_parameters"]) == ["down_proj", "gate.weight", "gate_up_proj"]
    assert config["rank_pattern"] == {r".*\.gate_up_proj": 8}
    assert header[PREFIX + "layers.1.mlp.experts.base_layer.lora_A.weight"]["shape"] == [8 * 8, 64]
    assert header[PREFIX + "layers.1.mlp.experts.lora_B.weight"]["shape"] == [64, 4 * 8]
    assert header[PREFIX + "layers.1.mlp.gate.lora_B.weight"]["shape"] == [8, 4]


def test_fused_gate_up_at_twice_the_max_rank_counts_as_the_max_rank():
    files = recipe("all_linear_max_rank")
    assert files.config_dict()["rank_pattern"] == {r".*\.gate_up_proj": 128}
    assert not validate(files)


def test_rank_over_max():
    problems = validate(recipe("rank_over_max"))
    assert problems.codes() == [codes.RANK_EXCEEDS_MAX]
    assert "r=65" in problems.result_message() and "64" in problems.result_message()


def test_rank_pattern_over_max():
    problems = validate(recipe("rank_pattern_over_max"))
    assert problems.codes() == [codes.RANK_PATTERN_EXCEEDS_MAX]
    assert "q_b_proj" in problems.result_message()


def test_gate_up_rank_pattern_above_twice_the_max_is_refused():
    files = with_config(recipe("all_linear"), rank_pattern={r".*\.gate_up_proj": 130})
    assert problems_first(files) == codes.RANK_PATTERN_EXCEEDS_MAX


def problems_first(files: AdapterFiles) -> str | None:
    return validate(files).result_code


@pytest.mark.parametrize("name, code", [
    ("dora", codes.DORA_UNSUPPORTED),
    ("lora_bias", codes.LORA_BIAS_UNSUPPORTED),
    ("modules_to_save", codes.MODULES_TO_SAVE_UNSUPPORTED),
])
def test_unsupported_features_refused_by_config_and_by_tensors(name, code):
    problems = validate(recipe(name))
    assert problems.result_code == code
    # the weights say it too (DoRA's magnitude vectors, lora_B biases, the saved lm_head)
    assert len(problems.codes()) > 1


def test_wrong_peft_type_task_type_and_base_model():
    base = recipe("attention")
    assert problems_first(with_config(base, peft_type="IA3")) == codes.PEFT_TYPE_UNSUPPORTED
    assert problems_first(with_config(base, task_type="SEQ_CLS")) == codes.TASK_TYPE_UNSUPPORTED
    assert problems_first(with_config(base, base_model_name_or_path="deepseek-ai/DeepSeek-V3")) == \
        codes.BASE_MODEL_MISMATCH
    assert problems_first(with_config(base, base_model_name_or_path=None)) == codes.BASE_MODEL_MISSING


def test_wrong_shape_names_the_tensor_and_both_shapes():
    name = PREFIX + "layers.2.self_attn.kv_b_proj.lora_B.weight"

    def widen(shapes):
        shapes[name] = ([97, 8], shapes[name][1])

    problems = validate(with_header(recipe("attention"), widen))
    assert problems.codes() == [codes.SHAPE_MISMATCH]
    assert f"{name}: expected [96, 8], found [97, 8]" in problems.result_message()


def test_rank_that_differs_from_the_config():
    def rank_4(shapes):
        a, b = PREFIX + "layers.0.self_attn.o_proj.lora_A.weight", PREFIX + "layers.0.self_attn.o_proj.lora_B.weight"
        shapes[a], shapes[b] = ([4, 64], "F32"), ([64, 4], "F32")

    problems = validate(with_header(recipe("attention"), rank_4))
    assert problems.codes() == [codes.RANK_MISMATCH]
    assert "rank 4" in problems.result_message() and "rank 8" in problems.result_message()


def test_unknown_module():
    def add_q_proj(shapes):
        shapes[PREFIX + "layers.0.self_attn.q_proj.lora_A.weight"] = ([8, 64], "F32")
        shapes[PREFIX + "layers.0.self_attn.q_proj.lora_B.weight"] = ([64, 8], "F32")

    problems = validate(with_header(recipe("attention"), add_q_proj))
    assert problems.codes() == [codes.MODULE_UNKNOWN]
    assert "layers.0.self_attn.q_proj" in problems.result_message()


def test_module_not_targeted_by_the_config():
    problems = validate(with_config(recipe("attention"), target_modules=["q_a_proj", "q_b_proj"]))
    assert problems.result_code == codes.MODULE_NOT_TARGETED
    assert "kv_b_proj" in problems.result_message()


def test_missing_lora_b():
    def drop(shapes):
        del shapes[PREFIX + "layers.1.self_attn.q_a_proj.lora_B.weight"]

    problems = validate(with_header(recipe("attention"), drop))
    assert problems.codes() == [codes.LORA_PAIR_INCOMPLETE]


def test_non_float_lora_tensor():
    def int32(shapes):
        name = PREFIX + "layers.1.self_attn.q_a_proj.lora_A.weight"
        shapes[name] = (shapes[name][0], "F16")
        name = PREFIX + "layers.1.self_attn.q_a_proj.lora_B.weight"
        shapes[name] = (shapes[name][0], "I32")

    assert validate(with_header(recipe("attention"), int32)).codes() == [codes.DTYPE_UNSUPPORTED]


def test_an_adapter_with_no_lora_tensor_is_an_error():
    def empty(shapes):
        shapes.clear()

    assert validate(with_header(recipe("attention"), empty)).codes() == [codes.ADAPTER_EMPTY]


def test_non_utf8_config():
    files = AdapterFiles(b'{"peft_type": "LORA\xff"}', recipe("attention").weights)
    assert validate(files).result_code == codes.CONFIG_NOT_UTF8


def test_truncated_weights():
    files = recipe("attention")
    problems = validate(AdapterFiles(files.config, files.weights[:len(files.weights) // 2]))
    assert problems.result_code == "buffer_size_mismatch"
    assert validate(AdapterFiles(files.config, files.weights[:100])).result_code == "header_truncated"


def test_every_problem_is_reported_at_once_the_first_is_the_result_code():
    config = recipe("attention").config_dict()
    config.update(peft_type="PREFIX_TUNING", task_type="SEQ_CLS", r=65, use_dora=True)
    name = PREFIX + "layers.0.self_attn.o_proj.lora_A.weight"

    def wrong(shapes):
        shapes[name] = ([65, 63], "F32")
        shapes[PREFIX + "layers.0.mlp.experts.0.gate_proj.lora_A.weight"] = ([65, 64], "F32")

    files = with_header(AdapterFiles(json.dumps(config).encode(), recipe("attention").weights), wrong)
    problems = validate(files)
    assert problems.codes()[:4] == [codes.PEFT_TYPE_UNSUPPORTED, codes.TASK_TYPE_UNSUPPORTED,
                                    codes.DORA_UNSUPPORTED, codes.RANK_EXCEEDS_MAX]
    assert {codes.MODULE_UNKNOWN, codes.SHAPE_MISMATCH} <= set(problems.codes())
    assert problems.result_code == codes.PEFT_TYPE_UNSUPPORTED
    message = problems.result_message()
    assert f"{name}: expected [65, 64], found [65, 63]" in message
    assert message.count("\n") == problems.total - 1
