"""The validator's result codes and the bounded list of problems one validation collects.

Every code here is documented (`DESCRIPTIONS`, rendered into the README) and exercised by a
test. The first problem found becomes the record's `result_code`; all of them, bounded, go
into `result_message`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from shared import safetensors_header as st

# the job itself
MODEL_UNKNOWN = "model_unknown"
CONFIG_MISSING = "config_missing"
WEIGHTS_MISSING = "weights_missing"
# adapter_config.json
CONFIG_TOO_LARGE = "config_too_large"
CONFIG_NOT_UTF8 = "config_not_utf8"
CONFIG_NOT_JSON = "config_not_json"
CONFIG_NOT_OBJECT = "config_not_object"
PEFT_TYPE_UNSUPPORTED = "peft_type_unsupported"
TASK_TYPE_UNSUPPORTED = "task_type_unsupported"
BASE_MODEL_MISSING = "base_model_missing"
BASE_MODEL_MISMATCH = "base_model_mismatch"
RANK_INVALID = "rank_invalid"
RANK_EXCEEDS_MAX = "rank_exceeds_max"
RANK_PATTERN_INVALID = "rank_pattern_invalid"
RANK_PATTERN_EXCEEDS_MAX = "rank_pattern_exceeds_max"
ALPHA_INVALID = "alpha_invalid"
ALPHA_PATTERN_INVALID = "alpha_pattern_invalid"
TARGET_MODULES_INVALID = "target_modules_invalid"
TARGET_MODULE_UNKNOWN = "target_module_unknown"
TARGET_PARAMETERS_INVALID = "target_parameters_invalid"
TARGET_PARAMETER_UNKNOWN = "target_parameter_unknown"
NO_TARGETS = "no_targets"
DORA_UNSUPPORTED = "dora_unsupported"
MODULES_TO_SAVE_UNSUPPORTED = "modules_to_save_unsupported"
LORA_BIAS_UNSUPPORTED = "lora_bias_unsupported"
BIAS_UNSUPPORTED = "bias_unsupported"
FEATURE_UNSUPPORTED = "feature_unsupported"
# adapter_model.safetensors, against the base model's architecture
TENSOR_KEY_INVALID = "tensor_key_invalid"
KEY_PREFIX_MIXED = "key_prefix_mixed"
MODULE_UNKNOWN = "module_unknown"
MODULE_NOT_TARGETED = "module_not_targeted"
EXPERTS_LAYOUT_MIXED = "experts_layout_mixed"
DTYPE_UNSUPPORTED = "dtype_unsupported"
LORA_PAIR_INCOMPLETE = "lora_pair_incomplete"
SHAPE_MISMATCH = "shape_mismatch"
RANK_MISMATCH = "rank_mismatch"
ADAPTER_EMPTY = "adapter_empty"
# against the engine that serves the model
MODULE_UNSUPPORTED_BY_ENGINE = "module_unsupported_by_engine"
ENGINE_NOT_DEPLOYED = "engine_not_deployed"

DESCRIPTIONS: dict[str, str] = {
    MODEL_UNKNOWN: "the job names a model that is not in the catalogue",
    CONFIG_MISSING: "adapter_config.json is not in the blob store",
    WEIGHTS_MISSING: "adapter_model.safetensors is not in the blob store",
    CONFIG_TOO_LARGE: "adapter_config.json is larger than 1 MiB",
    CONFIG_NOT_UTF8: "adapter_config.json is not UTF-8",
    CONFIG_NOT_JSON: "adapter_config.json is not valid JSON",
    CONFIG_NOT_OBJECT: "adapter_config.json is not a JSON object",
    PEFT_TYPE_UNSUPPORTED: 'peft_type is not "LORA"',
    TASK_TYPE_UNSUPPORTED: 'task_type is not "CAUSAL_LM"',
    BASE_MODEL_MISSING: "base_model_name_or_path is missing or empty",
    BASE_MODEL_MISMATCH: "base_model_name_or_path names another model",
    RANK_INVALID: "r is not a positive integer",
    RANK_EXCEEDS_MAX: "r is above the model's max rank",
    RANK_PATTERN_INVALID: "rank_pattern is not a map of at most 64 regexes (RE2 syntax, at most 1000 characters "
                          "each) to positive integers",
    RANK_PATTERN_EXCEEDS_MAX: "a rank_pattern rank is above the max rank for a projection it sets "
                              "(PEFT's fused gate_up at 2r counts as r)",
    ALPHA_INVALID: "lora_alpha is not a number",
    ALPHA_PATTERN_INVALID: "alpha_pattern is not a map of at most 64 regexes (RE2 syntax, at most 1000 characters "
                           "each) to numbers",
    TARGET_MODULES_INVALID: "target_modules or exclude_modules is not a list of names, a regex (RE2 syntax, at most "
                            "1000 characters) or \"all-linear\"",
    TARGET_MODULE_UNKNOWN: "a target_modules entry names no module of the base model",
    TARGET_PARAMETERS_INVALID: "target_parameters is not a list of names",
    TARGET_PARAMETER_UNKNOWN: "a target_parameters entry names no parameter of the base model",
    NO_TARGETS: "neither target_modules nor target_parameters is set",
    DORA_UNSUPPORTED: "DoRA (use_dora, lora_magnitude_vector) is not supported by the serving runtime",
    MODULES_TO_SAVE_UNSUPPORTED: "modules_to_save (fully trained copies of modules) is not supported",
    LORA_BIAS_UNSUPPORTED: "lora_bias (a bias on lora_B) is not supported",
    BIAS_UNSUPPORTED: 'bias other than "none" (trained base biases) is not supported',
    FEATURE_UNSUPPORTED: "another PEFT feature the serving runtime does not support is enabled",
    st.HEADER_TRUNCATED: "the weights file ends inside its safetensors header",
    st.HEADER_TOO_LARGE: "the safetensors header is larger, or holds more entries, JSON values or strings, than the "
                         "model's largest adapter needs (from the catalogue: for Kimi-K2.6 37.5 MB)",
    st.WEIGHTS_ZIP: "the weights file is a zip archive (torch.save), not safetensors",
    st.WEIGHTS_PICKLE: "the weights file is a pickle, not safetensors",
    st.HEADER_NOT_UTF8: "the safetensors header is not UTF-8",
    st.HEADER_NOT_JSON: "the safetensors header is not a JSON object (or does not start with '{'), or nests deeper "
                        "than a safetensors header's 3 levels",
    st.TENSOR_ENTRY_INVALID: "a tensor entry lacks a valid shape or data_offsets",
    st.DTYPE_UNKNOWN: "a tensor has a dtype safetensors does not define",
    st.TENSOR_SIZE_MISMATCH: "a tensor's data_offsets do not span shape x dtype size bytes",
    st.OFFSETS_INVALID: "data_offsets leave a gap or overlap",
    st.BUFFER_SIZE_MISMATCH: "the tensors do not end exactly at the end of the file",
    st.METADATA_INVALID: "__metadata__ is not a map of strings",
    TENSOR_KEY_INVALID: "a tensor is not <accepted prefix><module>.lora_A|lora_B.weight",
    KEY_PREFIX_MIXED: "tensors use more than one of the model's key prefixes",
    MODULE_UNKNOWN: "a tensor names no LoRA-targetable module of the base model",
    MODULE_NOT_TARGETED: "a tensor's module is not targeted by target_modules / target_parameters",
    EXPERTS_LAYOUT_MIXED: "one layer has both per-expert and fused experts tensors",
    DTYPE_UNSUPPORTED: "a LoRA tensor is not F32, F16 or BF16",
    LORA_PAIR_INCOMPLETE: "a module has lora_A without lora_B or the reverse",
    SHAPE_MISMATCH: "lora_A is not [r, in] or lora_B not [out, r] for its module",
    RANK_MISMATCH: "a module's rank differs from the one the config gives it",
    ADAPTER_EMPTY: "the weights hold no LoRA tensor: the adapter would change nothing",
    MODULE_UNSUPPORTED_BY_ENGINE: "the engine that serves the model applies no LoRA to these modules (e.g. vLLM: "
                                  "`kv_b_proj` under MLA, the MoE router): refused rather than served partly applied",
    ENGINE_NOT_DEPLOYED: "(`unverified`) statically valid, but this environment runs no worker pool for the model "
                         "(`deployed` in the catalogue, LORASERVE_DEPLOYED_MODELS), so nothing could run it",
}

MAX_LISTED = 25
MAX_MESSAGE_CHARS = 4000
MAX_LINE_CHARS = 500
MAX_TAIL_CHARS = 40


@dataclass(frozen=True)
class Problem:
    code: str
    message: str


@dataclass
class Problems:
    """Problems in the order found; keeps the first MAX_LISTED and counts the rest."""

    listed: list[Problem] = field(default_factory=list)
    total: int = 0

    def add(self, code: str, message: str) -> None:
        if code not in DESCRIPTIONS:
            raise ValueError(f"undocumented result code {code}")
        self.total += 1
        if len(self.listed) < MAX_LISTED:
            self.listed.append(Problem(code, message))

    def extend_counted(self, problems: list[Problem], omitted: int) -> None:
        for problem in problems:
            self.add(problem.code, problem.message)
        self.total += omitted

    def __bool__(self) -> bool:
        return self.total > 0

    @property
    def result_code(self) -> str | None:
        return self.listed[0].code if self.listed else None

    def codes(self) -> list[str]:
        return [problem.code for problem in self.listed]

    def result_message(self) -> str:
        """One line per problem, in order, within MAX_MESSAGE_CHARS; the last line counts the rest."""
        lines: list[str] = []
        used = 0
        for problem in self.listed:
            line = f"{problem.code}: {problem.message}"[:MAX_LINE_CHARS]
            if used + len(line) + 1 > MAX_MESSAGE_CHARS - MAX_TAIL_CHARS:
                break
            lines.append(line)
            used += len(line) + 1
        if self.total > len(lines):
            lines.append(f"... and {self.total - len(lines)} more problems")
        return "\n".join(lines)
