"""Rules for adapter_config.json; the result is a typed view the architecture rules use.

A field that fails its rule is reported and left out of the view (None), so the checks
of the weights still run and report their own problems: every problem at once.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from services.validator import base_model, codes
from services.validator.codes import Problems
from services.validator.features import check_features
from services.validator.targeting import (
    ALL_LINEAR,
    NOTHING,
    NameMatcher,
    Targeting,
    module_templates,
    parameter_templates,
    regex_matches_any,
    unknown_entries,
)
from shared.catalogue.catalogue import ModelEntry
from shared.patterns import MAX_PATTERN_ENTRIES, FullMatch, PatternError, PatternKeys, check_key

MAX_CONFIG_BYTES = 1024 * 1024
MAX_NAMES_LISTED = 10


@dataclass(frozen=True)
class RankPattern:
    key: str
    rank: int


@dataclass
class AdapterConfig:
    fields: dict[str, Any] = field(default_factory=dict)
    rank: int | None = None
    rank_patterns: list[RankPattern] | None = None  # None: rank_pattern was unreadable
    rank_keys: PatternKeys | None = None  # matches rank_patterns' keys, in their order
    targeting: Targeting | None = None  # None: the targets were unreadable

    @property
    def ranks_known(self) -> bool:
        return self.rank is not None and self.rank_patterns is not None

    def rank_for(self, full_name: str) -> tuple[int | None, RankPattern | None]:
        """The rank PEFT gives the module or parameter `full_name`, and the pattern that set it."""
        index = self.rank_keys.first_index(full_name) if self.rank_keys is not None else None
        if index is None:
            return self.rank, None
        pattern = self.rank_patterns[index]
        return pattern.rank, pattern


def read_config(raw: bytes, model: ModelEntry, problems: Problems) -> AdapterConfig:
    fields = _decode(raw, problems)
    if fields is None:
        return AdapterConfig()
    _check_identity(fields, model, problems)
    check_features(fields, problems)
    rank = _read_rank(fields, model, problems)
    patterns, rank_keys = _read_rank_pattern(fields.get("rank_pattern"), model, problems)
    _check_alpha(fields, problems)
    targeting = _read_targets(fields, model, problems)
    return AdapterConfig(fields, rank, patterns, rank_keys, targeting)


def _decode(raw: bytes, problems: Problems) -> dict[str, Any] | None:
    if len(raw) > MAX_CONFIG_BYTES:
        problems.add(codes.CONFIG_TOO_LARGE, f"adapter_config.json is over {MAX_CONFIG_BYTES} bytes")
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        problems.add(codes.CONFIG_NOT_UTF8, f"adapter_config.json is not UTF-8 (byte {error.start})")
        return None
    try:
        fields = json.loads(text)
    except (ValueError, RecursionError) as error:
        problems.add(codes.CONFIG_NOT_JSON, f"adapter_config.json is not valid JSON: {str(error)[:200]}")
        return None
    if not isinstance(fields, dict):
        problems.add(codes.CONFIG_NOT_OBJECT, "adapter_config.json is not a JSON object")
        return None
    return fields


def _check_identity(fields: dict[str, Any], model: ModelEntry, problems: Problems) -> None:
    if fields.get("peft_type") != "LORA":
        problems.add(codes.PEFT_TYPE_UNSUPPORTED, f'peft_type is {_short(fields.get("peft_type"))}, not "LORA"')
    if fields.get("task_type") != "CAUSAL_LM":
        problems.add(codes.TASK_TYPE_UNSUPPORTED, f'task_type is {_short(fields.get("task_type"))}, not "CAUSAL_LM"')
    name = fields.get("base_model_name_or_path")
    if not isinstance(name, str) or not name.strip():
        problems.add(codes.BASE_MODEL_MISSING, f"base_model_name_or_path is {_short(name)}; it must name {model.id}")
    elif not base_model.identifies(name, model.id):
        problems.add(codes.BASE_MODEL_MISMATCH, f"base_model_name_or_path {_short(name)} does not name {model.id}")


def _is_int(value: Any) -> bool:
    return type(value) is int


def _is_number(value: Any) -> bool:
    return type(value) in (int, float)


def _read_rank(fields: dict[str, Any], model: ModelEntry, problems: Problems) -> int | None:
    rank = fields.get("r")
    if not _is_int(rank) or rank < 1:
        problems.add(codes.RANK_INVALID, f"r is {_short(rank)}, not a positive integer")
        return None
    if rank > model.max_rank:
        problems.add(codes.RANK_EXCEEDS_MAX, f"r={rank} is above {model.id}'s max rank {model.max_rank}")
    return rank


def _read_rank_pattern(value: Any, model: ModelEntry,
                       problems: Problems) -> tuple[list[RankPattern] | None, PatternKeys | None]:
    keys = _read_pattern_map("rank_pattern", value, lambda rank: _is_int(rank) and rank >= 1, "a positive integer",
                             codes.RANK_PATTERN_INVALID, problems)
    if keys is None:
        return None, None
    patterns = [RankPattern(key, value[key]) for key in keys.keys]
    for pattern in patterns:
        if pattern.rank > 2 * model.max_rank:  # above the limit of every projection, fused gate_up included
            problems.add(codes.RANK_PATTERN_EXCEEDS_MAX,
                         f"rank_pattern[{pattern.key!r}]={pattern.rank} is above {model.id}'s max rank {model.max_rank}")
    return patterns, keys


def _check_alpha(fields: dict[str, Any], problems: Problems) -> None:
    alpha = fields.get("lora_alpha")
    if alpha is not None and not _is_number(alpha):
        problems.add(codes.ALPHA_INVALID, f"lora_alpha is {_short(alpha)}, not a number")
    _read_pattern_map("alpha_pattern", fields.get("alpha_pattern"), _is_number, "a number",
                      codes.ALPHA_PATTERN_INVALID, problems)


def _read_pattern_map(name: str, value: Any, value_ok: Callable[[Any], bool], wanted: str, code: str,
                      problems: Problems) -> PatternKeys | None:
    """A rank_pattern / alpha_pattern map: every bad key and value reported; None when any is bad."""
    if value is None:
        value = {}
    if not isinstance(value, dict) or len(value) > MAX_PATTERN_ENTRIES:
        problems.add(code, f"{name} must be an object of at most {MAX_PATTERN_ENTRIES} entries")
        return None
    valid = True
    for key, entry in value.items():
        if not value_ok(entry):
            problems.add(code, f"{name}[{_short(key)}] is {_short(entry)}, not {wanted}")
            valid = False
        try:
            check_key(key)
        except PatternError as error:
            problems.add(code, f"{name} key: {error}")
            valid = False
    if not valid:
        return None
    try:
        return PatternKeys(value)
    except PatternError as error:  # each key compiles, all of them together do not
        problems.add(code, f"{name}: {error}")
        return None


# -- targets ---------------------------------------------------------------------------
def _read_targets(fields: dict[str, Any], model: ModelEntry, problems: Problems) -> Targeting | None:
    modules = _target_modules(fields.get("target_modules"), model, problems)
    parameters = _target_parameters(fields.get("target_parameters"), model, problems)
    exclude = _exclude_modules(fields.get("exclude_modules"), problems)
    if modules is NOTHING and parameters is NOTHING:
        problems.add(codes.NO_TARGETS, "neither target_modules nor target_parameters names anything to adapt")
        return None  # every tensor would be "not targeted": one problem says it
    if modules is None or parameters is None or exclude is None:
        return None
    return Targeting(model.shapes, modules, parameters, exclude)


def _target_modules(value: Any, model: ModelEntry, problems: Problems) -> NameMatcher | None:
    if value is None or value == []:
        return NOTHING
    templates = module_templates(model.shapes)
    if isinstance(value, str):
        if value.lower() == ALL_LINEAR:
            return NameMatcher(everything=True)
        try:
            regex = FullMatch(value)
        except PatternError as error:
            problems.add(codes.TARGET_MODULES_INVALID, f"target_modules: {error}")
            return None
        if not regex_matches_any(regex, templates, model.module_prefixes):
            problems.add(codes.TARGET_MODULE_UNKNOWN, f"target_modules regex {_short(value)} matches no module of "
                         f"{model.id}")
        return NameMatcher(regex=regex)
    if not isinstance(value, list) or not all(isinstance(entry, str) for entry in value):
        problems.add(codes.TARGET_MODULES_INVALID, "target_modules must be a list of names, a regex or \"all-linear\"")
        return None
    unknown = unknown_entries(set(value), templates, model.module_prefixes)
    if unknown:
        problems.add(codes.TARGET_MODULE_UNKNOWN, f"target_modules {_names(unknown)} name no module of {model.id}")
    return NameMatcher(names=value)


def _target_parameters(value: Any, model: ModelEntry, problems: Problems) -> NameMatcher | None:
    if value is None or value == []:
        return NOTHING
    if not isinstance(value, list) or not all(isinstance(entry, str) for entry in value):
        problems.add(codes.TARGET_PARAMETERS_INVALID, "target_parameters must be a list of parameter names")
        return None
    unknown = unknown_entries(set(value), parameter_templates(model.shapes), model.module_prefixes)
    if unknown:
        problems.add(codes.TARGET_PARAMETER_UNKNOWN,
                     f"target_parameters {_names(unknown)} name no experts or router parameter of {model.id}")
    return NameMatcher(names=value)


def _exclude_modules(value: Any, problems: Problems) -> NameMatcher | None:
    if value is None or value == []:
        return NOTHING
    if isinstance(value, str):
        try:
            return NameMatcher(regex=FullMatch(value))
        except PatternError as error:
            problems.add(codes.TARGET_MODULES_INVALID, f"exclude_modules: {error}")
            return None
    if isinstance(value, list) and all(isinstance(entry, str) for entry in value):
        return NameMatcher(names=value)
    problems.add(codes.TARGET_MODULES_INVALID, "exclude_modules must be a list of names or a regex")
    return None


def _names(names: list[str]) -> str:
    shown = ", ".join(repr(name[:80]) for name in sorted(names)[:MAX_NAMES_LISTED])
    more = len(names) - MAX_NAMES_LISTED
    return shown + (f" (and {more} more)" if more > 0 else "")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
