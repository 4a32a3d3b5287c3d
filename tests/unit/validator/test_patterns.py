"""Every regex a config carries runs on RE2: pathological patterns get a verdict in milliseconds,
patterns RE2 refuses get their field's code, and matching follows PEFT's own rules."""
import pytest

from services.validator import codes
from services.validator.validate import validate_adapter
from shared.catalogue.catalogue import load_catalogue
from shared.patterns import MAX_PATTERN_ENTRIES, FullMatch, PatternKeys
from shared.safetensors_header import parse_bytes
from tests.unit.validator.adapters import TINY, AdapterFiles, recipe, with_config
from tests.unit.validator.pathological import CATASTROPHIC, UNSUPPORTED, no_hang


def validate(files: AdapterFiles):
    with no_hang():
        return validate_adapter(files.config, parse_bytes(files.weights), load_catalogue().get(TINY))


@pytest.mark.parametrize("pattern", CATASTROPHIC)
def test_a_catastrophic_target_modules_regex_is_run_and_matches_nothing(pattern):
    problems = validate(with_config(recipe("attention"), target_modules=pattern))
    assert problems.result_code == codes.TARGET_MODULE_UNKNOWN
    assert set(problems.codes()) == {codes.TARGET_MODULE_UNKNOWN, codes.MODULE_NOT_TARGETED}


@pytest.mark.parametrize("pattern", CATASTROPHIC)
def test_catastrophic_pattern_keys_are_matched_against_every_module(pattern):
    files = with_config(recipe("attention"), rank_pattern={pattern: 4, "o_proj": 8},
                        alpha_pattern={pattern: 4, "o_proj": 16}, exclude_modules=pattern)
    assert not validate(files)


def test_a_catastrophic_key_that_matches_sets_the_rank():
    # `(.|.)+_proj` is exponential for `re` on a name without "_proj"; on RE2 it matches every projection
    files = with_config(recipe("attention"), rank_pattern={r"(.|.)+x": 2, r"(.|.)+_proj": 4})
    modules = [name for name in files.header() if name.endswith("_proj.lora_A.weight")]  # not kv_a_proj_with_mqa
    problems = validate(files)
    assert problems.codes() == [codes.RANK_MISMATCH] * len(modules)  # each trained at rank 8
    assert "rank 8, but the config gives" in problems.result_message() and "rank 4" in problems.result_message()


@pytest.mark.parametrize("pattern", UNSUPPORTED)
@pytest.mark.parametrize(("field", "code"), [("target_modules", codes.TARGET_MODULES_INVALID),
                                             ("exclude_modules", codes.TARGET_MODULES_INVALID),
                                             ("rank_pattern", codes.RANK_PATTERN_INVALID),
                                             ("alpha_pattern", codes.ALPHA_PATTERN_INVALID)])
def test_a_pattern_re2_refuses_gets_its_field_code(pattern, field, code):
    value = {pattern: 8} if field.endswith("_pattern") else pattern
    problems = validate(with_config(recipe("attention"), **{field: value}))
    assert problems.codes() == [code]
    assert "RE2" in problems.result_message()


@pytest.mark.parametrize(("field", "code"), [("rank_pattern", codes.RANK_PATTERN_INVALID),
                                             ("alpha_pattern", codes.ALPHA_PATTERN_INVALID)])
def test_a_pattern_map_holds_at_most_64_keys(field, code):
    at_cap = {f"layers\\.{i}\\.nothing": 8 for i in range(64)}
    assert not validate(with_config(recipe("attention"), **{field: at_cap}))
    over = {**at_cap, "one_more": 8}
    assert validate(with_config(recipe("attention"), **{field: over})).codes() == [code]


@pytest.mark.parametrize(("field", "code"), [("target_modules", codes.TARGET_MODULES_INVALID),
                                             ("rank_pattern", codes.RANK_PATTERN_INVALID),
                                             ("alpha_pattern", codes.ALPHA_PATTERN_INVALID)])
def test_a_pattern_is_at_most_1000_characters(field, code):
    pattern = "(" * 500 + ")" * 501
    value = {pattern: 8} if field.endswith("_pattern") else pattern
    problems = validate(with_config(recipe("attention"), **{field: value}))
    assert problems.codes() == [code] and "1000 characters" in problems.result_message()


def test_alpha_pattern_values_must_be_numbers():
    problems = validate(with_config(recipe("attention"), alpha_pattern={"o_proj": "high"}))
    assert problems.codes() == [codes.ALPHA_PATTERN_INVALID]


SAFE = [r".*\.(q_b_proj|o_proj)", r"model\.layers\.\d+\.self_attn\..*", r".*experts\.(gate|up|down)_proj",
        r"[^.]+", r".*\.mlp\.gate", "o_proj", r"(?i:.*O_PROJ)"]
NAMES = [f"model.layers.{layer}.{module}" for layer in (0, 1, 12) for module in (
    "self_attn.q_b_proj", "self_attn.o_proj", "mlp.experts.gate_proj", "mlp.gate", "mlp.experts.7.down_proj")]


@pytest.mark.parametrize("pattern", SAFE)
def test_a_target_modules_regex_matches_the_names_peft_matches(pattern):
    import re

    regex = FullMatch(pattern)
    assert [regex.matches(name) for name in NAMES] == [re.fullmatch(pattern, name) is not None for name in NAMES]


def test_pattern_keys_pick_the_key_peft_picks():
    from peft.utils.other import get_pattern_key

    keys = PatternKeys(SAFE)
    for name in NAMES:
        picked = get_pattern_key(SAFE, name)
        assert keys.first(name) == (picked if picked in SAFE else None), name


def test_64_large_keys_still_match_exactly_in_one_pass():
    # each key is ~2,800 RE2 instructions: the set's matcher must still answer exactly, not give up
    keys = [rf"layers\.{i}\." + r"\w{1,700}" for i in range(MAX_PATTERN_ENTRIES)]
    matcher = PatternKeys(keys)
    assert matcher.first_index("model.layers.63.mlp") == 63
    assert matcher.first_index("model.layers.63." + "a" * 700) == 63
    assert matcher.first_index("model.layers.63." + "a" * 701) is None
    assert matcher.first_index("model.layers.64.mlp") is None


def test_keys_too_large_together_are_refused_with_the_field_code():
    keys = {rf"layers\.{i}\." + r"\w{1,990}": 8 for i in range(MAX_PATTERN_ENTRIES)}
    problems = validate(with_config(recipe("attention"), rank_pattern=keys))
    assert problems.codes() == [codes.RANK_PATTERN_INVALID] and "too large" in problems.result_message()
