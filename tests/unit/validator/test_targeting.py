"""target_modules / target_parameters / rank_pattern resolve on the architecture the way PEFT resolves them."""
import pytest

from services.validator import codes
from services.validator.validate import validate_adapter
from shared.catalogue.catalogue import load_catalogue
from shared.safetensors_header import parse_bytes
from tests.unit.validator.adapters import ATTENTION, TINY, AdapterFiles, recipe, with_config, with_header

PREFIX = "base_model.model.model."


def validate(files: AdapterFiles):
    return validate_adapter(files.config, parse_bytes(files.weights), load_catalogue().get(TINY))


def attention_paths(layers=range(3)) -> list[str]:
    return [f"model.layers.{i}.self_attn.{name}" for i in layers for name in ATTENTION]


def test_all_linear_as_a_string_targets_everything_peft_saves():
    assert not validate(with_config(recipe("all_linear"), target_modules="all-linear", target_parameters=None))


def test_full_module_paths_resolve():
    assert not validate(with_config(recipe("attention"), target_modules=attention_paths()))


def test_a_full_path_to_a_layer_that_does_not_exist_is_unknown():
    problems = validate(with_config(recipe("attention"), target_modules=[*attention_paths(),
                                                                         "model.layers.3.self_attn.o_proj"]))
    assert problems.codes() == [codes.TARGET_MODULE_UNKNOWN]
    assert "model.layers.3.self_attn.o_proj" in problems.result_message()


def test_full_paths_of_some_layers_leave_the_others_untargeted():
    problems = validate(with_config(recipe("attention"), target_modules=attention_paths(range(2))))
    assert set(problems.codes()) == {codes.MODULE_NOT_TARGETED}
    assert problems.total == len(ATTENTION)
    assert "layers.2." in problems.result_message() and "layers.1." not in problems.result_message()


def test_regex_naming_the_old_expert_names_targets_the_fused_experts():
    regex = r".*\.(q_a_proj|q_b_proj|kv_a_proj_with_mqa|kv_b_proj|o_proj|gate|experts\.(gate|up|down)_proj)"
    assert not validate(with_config(recipe("all_linear"), target_modules=regex, target_parameters=None))


def test_regex_that_matches_nothing_is_unknown():
    problems = validate(with_config(recipe("attention"), target_modules=r".*\.(q_proj|v_proj)"))
    assert problems.result_code == codes.TARGET_MODULE_UNKNOWN


@pytest.mark.parametrize("regex", [r"(a+)+$", r"(.*a){12}", r"([a-z]+)*_proj", ".*a.*b.*c.*d.*e"])
def test_regexes_that_backtrack_in_python_run_on_re2_and_match_nothing(regex):
    problems = validate(with_config(recipe("attention"), target_modules=regex))
    assert problems.result_code == codes.TARGET_MODULE_UNKNOWN


@pytest.mark.parametrize("regex", ["[unclosed", "x" * 1001, r"(?=o_proj).*"])
def test_invalid_or_oversized_regexes_are_refused_before_running(regex):
    problems = validate(with_config(recipe("attention"), target_modules=regex))
    assert problems.codes() == [codes.TARGET_MODULES_INVALID]


def test_exclude_modules_removes_targets():
    problems = validate(with_config(recipe("attention"), exclude_modules=["layers.0.self_attn.o_proj"]))
    assert problems.codes() == [codes.MODULE_NOT_TARGETED]
    assert "model.layers.0.self_attn.o_proj" in problems.result_message()


def test_rank_pattern_first_match_sets_a_module_rank():
    def o_proj_rank_4(shapes):
        shapes[PREFIX + "layers.0.self_attn.o_proj.lora_A.weight"] = ([4, 64], "F32")
        shapes[PREFIX + "layers.0.self_attn.o_proj.lora_B.weight"] = ([64, 4], "F32")

    files = with_header(recipe("attention"), o_proj_rank_4)
    assert validate(files).codes() == [codes.RANK_MISMATCH]
    layer_0, every_layer = (r"layers\.0\.self_attn\.o_proj", 4), ("o_proj", 8)
    assert not validate(with_config(files, rank_pattern=dict([layer_0, every_layer])))
    # PEFT takes the first pattern that matches, in the order the config lists them
    assert validate(with_config(files, rank_pattern=dict([every_layer, layer_0]))).codes() == [codes.RANK_MISMATCH]


def test_only_gate_up_may_use_twice_the_max_rank():
    config = {"rank_pattern": {r".*\.gate_up_proj": 128, "q_a_proj": 128}}
    problems = validate(with_config(recipe("all_linear"), **config))
    assert codes.RANK_PATTERN_EXCEEDS_MAX in problems.codes()
    assert "q_a_proj" in problems.result_message() and "gate_up_proj'" not in problems.result_message()


def test_fields_peft_uses_only_for_training_are_kept():
    files = with_config(recipe("attention"), lora_dropout=0.1, init_lora_weights="gaussian", use_rslora=True,
                        layers_to_transform=None, loftq_config={}, peft_version="0.21.2", custom_note="hi")
    assert not validate(files)
