"""The worker matches rank_pattern / alpha_pattern keys on RE2 with PEFT's rules: a pending LoRA's
pathological key cannot stall the worker, and a key RE2 refuses fails the load instead."""
import pytest
from peft.utils.other import get_pattern_key

from services.gpu_worker.adapters.lora_config import parse_settings
from services.gpu_worker.errors import LOAD_FAILED
from tests.unit.validator.pathological import CATASTROPHIC, UNSUPPORTED, no_hang

NAMES = [f"model.layers.{layer}.{module}" for layer in range(3) for module in (
    "self_attn.q_a_proj", "self_attn.kv_a_proj_with_mqa", "self_attn.o_proj", "mlp.experts.gate_up_proj",
    "mlp.gate.weight", "mlp.shared_experts.down_proj")]


def settings(**config):
    parsed, problems = parse_settings({"peft_type": "LORA", "r": 8, "lora_alpha": 16, **config})
    assert not problems, problems
    return parsed


@pytest.mark.parametrize("pattern", CATASTROPHIC)
def test_a_catastrophic_key_is_matched_against_every_module_without_hanging(pattern):
    lora = settings(rank_pattern={pattern: 4}, alpha_pattern={pattern: 4})
    with no_hang():
        assert [(lora.rank_for(name), lora.alpha_for(name)) for name in NAMES] == [(8, 16.0)] * len(NAMES)


def test_keys_pick_ranks_and_alphas_as_peft_does():
    keys = [r"layers\.0\.self_attn\.o_proj", "o_proj", r"[a-z_]+_proj", r"experts\.gate_up_proj", "gate.weight",
            r"model\.layers\.\d+\.mlp\.gate\.weight", "layers.2"]
    ranks = {key: rank for rank, key in enumerate(keys, start=1)}
    lora = settings(rank_pattern=ranks, alpha_pattern={key: 2.0 * rank for key, rank in ranks.items()})
    for name in NAMES:
        with no_hang():
            expected = get_pattern_key(keys, name)  # PEFT's own: the name itself when no key matches
            assert (lora.rank_for(name), lora.alpha_for(name)) == (
                (ranks[expected], 2.0 * ranks[expected]) if expected in ranks else (8, 16.0)), name


@pytest.mark.parametrize("pattern", UNSUPPORTED + ["x" * 1001])
@pytest.mark.parametrize("field", ["rank_pattern", "alpha_pattern"])
def test_a_key_re2_refuses_fails_the_load(pattern, field):
    _, problems = parse_settings({"peft_type": "LORA", "r": 8, "lora_alpha": 16, field: {pattern: 4}})
    assert [p.code for p in problems] == [LOAD_FAILED]
    assert field in problems[0].message


def test_a_map_of_more_than_64_keys_fails_the_load():
    keys = {f"layers\\.{i}\\.nothing": 4 for i in range(65)}
    _, problems = parse_settings({"peft_type": "LORA", "r": 8, "lora_alpha": 16, "rank_pattern": keys})
    assert [p.code for p in problems] == [LOAD_FAILED] and "64" in problems[0].message
