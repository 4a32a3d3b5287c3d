"""Hypothesis fuzzing of what the validator parses from a user's upload: adapter_config.json (any bytes,
and PEFT-shaped objects with hostile values) together with a safetensors header naming plausible and
implausible tensors. Every input ends in a list of documented result codes, never an exception.
(The safetensors header parser alone is fuzzed in tests/unit/validator.)"""
from __future__ import annotations

import json
import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.validator.codes import DESCRIPTIONS
from services.validator.validate import validate_adapter
from shared import safetensors_header as sh
from shared.catalogue.catalogue import load_catalogue

CATALOGUE = load_catalogue()
MODELS = [CATALOGUE.get("loraserve/kimi-k2-tiny"), CATALOGUE.get("moonshotai/Kimi-K2.6")]
MODULES = ["q_a_proj", "q_b_proj", "kv_a_proj_with_mqa", "kv_b_proj", "o_proj", "gate_proj", "up_proj",
           "down_proj", "gate", "gate_up_proj", "experts", "shared_experts", "lm_head", "embed_tokens"]
PATTERNS = [r".*\.(q_b_proj|o_proj)", r"(a+)+$", r"(.*a){20}", r"[", r"\d+", r"^model\.layers\.0\..*", "all-linear"]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=16)
names = st.sampled_from(MODULES) | st.sampled_from(PATTERNS) | st.text(max_size=24)
name_lists = st.lists(names, max_size=8)
name_maps = st.dictionaries(names, st.integers(-3, 2**40) | st.floats(allow_nan=False) | json_values, max_size=6)

peft_configs = st.fixed_dictionaries({}, optional={
    "peft_type": st.just("LORA") | json_values,
    "task_type": st.just("CAUSAL_LM") | json_values,
    "base_model_name_or_path": st.sampled_from([m.id for m in MODELS]) | json_values,
    "r": st.integers(-3, 2**70) | json_values,
    "lora_alpha": st.integers(-3, 2**70) | st.floats() | json_values,
    "target_modules": names | name_lists | json_values,
    "target_parameters": name_lists | json_values,
    "exclude_modules": names | name_lists | json_values,
    "rank_pattern": name_maps | json_values,
    "alpha_pattern": name_maps | json_values,
    "layers_to_transform": st.lists(st.integers(-2, 100), max_size=4) | json_values,
    "use_rslora": json_values, "use_dora": json_values, "bias": json_values, "modules_to_save": json_values,
})
config_bytes = (peft_configs.map(lambda c: json.dumps(c).encode())
                | st.binary(max_size=256)
                | st.sampled_from([b"[" * 100_000, b'{"r": 1e999999}', b'{"r": NaN}', b"\xff\xfe{}", b"{}" * 3]))

tensor_names = st.builds(
    "base_model.model.model.layers.{}.{}.{}.lora_{}.weight".format,
    st.integers(-1, 70), st.sampled_from(["self_attn", "mlp", "mlp.experts", "mlp.shared_experts", "mlp.experts.3"]),
    st.sampled_from(MODULES), st.sampled_from(["A", "B"])) | st.text(max_size=40)
tensors = st.dictionaries(tensor_names, st.tuples(
    st.lists(st.integers(0, 1 << 20), max_size=4), st.sampled_from(["BF16", "F32", "F16", "I8", "F8_E4M3"])),
    max_size=12)


def header_of(shapes: dict[str, tuple[list[int], str]]) -> sh.SafetensorsHeader:
    """A header whose offsets are consistent, over a buffer that is never allocated."""
    entries, offset = {}, 0
    for name, (shape, dtype) in shapes.items():
        size = sh.DTYPE_BITS[dtype] // 8
        for dim in shape:
            size *= dim
        entries[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(entries).encode()
    return sh.parse_header(raw, sh.LENGTH_BYTES + len(raw) + offset)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(config=config_bytes, shapes=tensors, model=st.sampled_from(MODELS))
def test_any_config_and_header_end_in_documented_result_codes(config, shapes, model):
    problems = validate_adapter(config, header_of(shapes), model)
    assert set(problems.codes()) <= set(DESCRIPTIONS)


@settings(max_examples=100, deadline=None)
@given(length=st.integers(0, 2**64 - 1), body=st.binary(max_size=64), config=config_bytes)
def test_any_weights_bytes_end_in_documented_result_codes(length, body, config):
    header = sh.parse_bytes(struct.pack("<Q", length) + body)
    problems = validate_adapter(config, header, MODELS[0])
    assert problems and set(problems.codes()) <= set(DESCRIPTIONS)
