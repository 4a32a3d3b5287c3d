"""A corpus of bad adapters, one per result code, each giving exactly that code (maybe once per
tensor, and nothing else).

Each starts from a good adapter PEFT saved for the tiny model and breaks one thing.
"""
import io
import json
import struct

import pytest
import torch

from services.validator import codes
from services.validator.validate import validate_adapter
from shared.catalogue.catalogue import load_catalogue
from shared.safetensors_header import parse_bytes
from tests.unit.validator.adapters import ATTENTION, TINY, AdapterFiles, recipe, with_config, with_header

PREFIX = "base_model.model.model."
LAYER0_O_A = PREFIX + "layers.0.self_attn.o_proj.lora_A.weight"
LAYER0_O_B = PREFIX + "layers.0.self_attn.o_proj.lora_B.weight"
# the codes a validation job itself can end with (tests/integration/validator) and those the tiny
# model cannot show, having a single key prefix and an engine that applies every module
# (test_validate_kimi.py)
TESTED_ELSEWHERE = {codes.MODEL_UNKNOWN, codes.CONFIG_MISSING, codes.WEIGHTS_MISSING, codes.KEY_PREFIX_MIXED,
                    codes.MODULE_UNSUPPORTED_BY_ENGINE, codes.ENGINE_NOT_DEPLOYED}


def good() -> AdapterFiles:
    return recipe("attention")


def config_bytes(raw: bytes) -> AdapterFiles:
    return AdapterFiles(raw, good().weights)


def weights(raw: bytes) -> AdapterFiles:
    return AdapterFiles(good().config, raw)


def header_edit(edit) -> AdapterFiles:
    """Edit the good adapter's header JSON in place (offsets untouched), keeping the data."""
    files = good()
    (length,) = struct.unpack("<Q", files.weights[:8])
    header = json.loads(files.weights[8:8 + length])
    edit(header)
    raw = json.dumps(header).encode()
    return weights(struct.pack("<Q", len(raw)) + raw + files.weights[8 + length:])


def raw_header(raw: bytes, data: bytes = b"") -> AdapterFiles:
    return weights(struct.pack("<Q", len(raw)) + raw + data)


def shift_offsets_after_first(header: dict) -> None:
    first = min((e["data_offsets"][0], name) for name, e in header.items() if name != "__metadata__")[1]
    for name, entry in header.items():
        if name not in ("__metadata__", first):
            entry["data_offsets"] = [o + 4 for o in entry["data_offsets"]]


def torch_saved(zip_format: bool) -> bytes:
    buffer = io.BytesIO()
    torch.save({"w": torch.zeros(2)}, buffer, _use_new_zipfile_serialization=zip_format)
    return buffer.getvalue()


def set_shapes(**changes):
    def edit(shapes):
        for name, (shape, dtype) in changes.items():
            shapes[name] = (shape, dtype)
    return edit


def drop(name):
    def edit(shapes):
        del shapes[name]
    return edit


def mixed_experts() -> AdapterFiles:
    files = with_config(recipe("all_linear"), target_modules=[*ATTENTION, "gate_proj"])
    return with_header(files, set_shapes(**{
        "base_model.model.model.layers.1.mlp.experts.0.gate_proj.lora_A.weight": ([4, 64], "F32"),
        "base_model.model.model.layers.1.mlp.experts.0.gate_proj.lora_B.weight": ([32, 4], "F32"),
    }))


CORPUS = {
    codes.CONFIG_TOO_LARGE: lambda: config_bytes(b" " * (1024 * 1024 + 1)),
    codes.CONFIG_NOT_UTF8: lambda: config_bytes(b'{"r": "\xff"}'),
    codes.CONFIG_NOT_JSON: lambda: config_bytes(b'{"r": 8,'),
    codes.CONFIG_NOT_OBJECT: lambda: config_bytes(b"[8]"),
    codes.PEFT_TYPE_UNSUPPORTED: lambda: with_config(good(), peft_type="LOHA"),
    codes.TASK_TYPE_UNSUPPORTED: lambda: with_config(good(), task_type="SEQ_2_SEQ_LM"),
    codes.BASE_MODEL_MISSING: lambda: with_config(good(), base_model_name_or_path=""),
    codes.BASE_MODEL_MISMATCH: lambda: with_config(good(), base_model_name_or_path="/models/kimi-k2-tiny"),
    codes.RANK_INVALID: lambda: with_config(good(), r="8"),
    codes.RANK_EXCEEDS_MAX: lambda: recipe("rank_over_max"),
    codes.RANK_PATTERN_INVALID: lambda: with_config(good(), rank_pattern={"q_b_proj": 0}),
    codes.RANK_PATTERN_EXCEEDS_MAX: lambda: recipe("rank_pattern_over_max"),
    codes.ALPHA_INVALID: lambda: with_config(good(), lora_alpha="16"),
    codes.ALPHA_PATTERN_INVALID: lambda: with_config(good(), alpha_pattern={r"(?<=self_attn\.)o_proj": 16}),
    codes.TARGET_MODULES_INVALID: lambda: with_config(good(), target_modules=r"(?=.*o_proj).*"),
    codes.TARGET_MODULE_UNKNOWN: lambda: with_config(good(), target_modules=[*ATTENTION, "q_proj"]),
    codes.TARGET_PARAMETERS_INVALID: lambda: with_config(good(), target_parameters="gate_up_proj"),
    codes.TARGET_PARAMETER_UNKNOWN: lambda: with_config(good(), target_parameters=["o_proj.weight"]),
    codes.NO_TARGETS: lambda: with_config(good(), target_modules=None, target_parameters=None),
    codes.DORA_UNSUPPORTED: lambda: with_config(good(), use_dora=True),
    codes.MODULES_TO_SAVE_UNSUPPORTED: lambda: with_config(good(), modules_to_save=["lm_head"]),
    codes.LORA_BIAS_UNSUPPORTED: lambda: with_config(good(), lora_bias=True),
    codes.BIAS_UNSUPPORTED: lambda: with_config(good(), bias="lora_only"),
    codes.FEATURE_UNSUPPORTED: lambda: with_config(good(), layer_replication=[[0, 2], [1, 3]]),
    "header_truncated": lambda: weights(good().weights[:5]),
    "header_too_large": lambda: weights(struct.pack("<Q", 200 * 1024 * 1024) + b"{" + bytes(64)),
    "weights_zip": lambda: weights(torch_saved(zip_format=True)),
    "weights_pickle": lambda: weights(torch_saved(zip_format=False)),
    "header_not_utf8": lambda: raw_header(b'{"__metadata__": {"format": "\xff"}}'),
    "header_not_json": lambda: raw_header(b'{"a": [0, 1}'),
    "tensor_entry_invalid": lambda: header_edit(lambda h: h.update(stray={"dtype": "F32", "shape": "8x8",
                                                                             "data_offsets": [0, 0]})),
    "dtype_unknown": lambda: header_edit(lambda h: h.update(stray={"dtype": "Q4_K", "shape": [0],
                                                                      "data_offsets": [0, 0]})),
    "tensor_size_mismatch": lambda: header_edit(lambda h: h[LAYER0_O_A].update(dtype="F16")),
    "offsets_invalid": lambda: weights(header_edit(shift_offsets_after_first).weights + bytes(4)),
    "buffer_size_mismatch": lambda: weights(good().weights + bytes(4)),
    "metadata_invalid": lambda: header_edit(lambda h: h.update(__metadata__={"format": ["pt"]})),
    codes.TENSOR_KEY_INVALID: lambda: with_header(good(), set_shapes(**{PREFIX + "embed_tokens.weight":
                                                                         ([300, 64], "F32")})),
    codes.MODULE_UNKNOWN: lambda: with_header(good(), set_shapes(**{
        PREFIX + "layers.0.self_attn.q_proj.lora_A.weight": ([8, 64], "F32"),
        PREFIX + "layers.0.self_attn.q_proj.lora_B.weight": ([64, 8], "F32")})),
    codes.MODULE_NOT_TARGETED: lambda: with_config(good(), target_modules=ATTENTION[:-1]),
    codes.EXPERTS_LAYOUT_MIXED: mixed_experts,
    codes.DTYPE_UNSUPPORTED: lambda: with_header(good(), set_shapes(**{LAYER0_O_A: ([8, 64], "I32")})),
    codes.LORA_PAIR_INCOMPLETE: lambda: with_header(good(), drop(LAYER0_O_B)),
    codes.SHAPE_MISMATCH: lambda: with_header(good(), set_shapes(**{LAYER0_O_B: ([65, 8], "F32")})),
    codes.RANK_MISMATCH: lambda: with_header(good(), set_shapes(**{LAYER0_O_A: ([6, 64], "F32"),
                                                                     LAYER0_O_B: ([64, 6], "F32")})),
    codes.ADAPTER_EMPTY: lambda: with_header(good(), lambda shapes: shapes.clear()),
}


@pytest.mark.parametrize("code", sorted(CORPUS))
def test_each_bad_adapter_gives_exactly_its_code(code):
    files = CORPUS[code]()
    problems = validate_adapter(files.config, parse_bytes(files.weights), load_catalogue().get(TINY))
    assert problems.result_code == code and set(problems.codes()) == {code}, problems.result_message()


def test_the_corpus_and_the_other_tests_cover_every_documented_code():
    assert set(CORPUS) | TESTED_ELSEWHERE == set(codes.DESCRIPTIONS)
