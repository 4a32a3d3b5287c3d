"""The parts of a PEFT adapter_config.json that decide how its tensors are applied."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from services.gpu_worker.errors import LOAD_FAILED, Problem
from shared.patterns import PatternError, PatternKeys

# features the engine cannot apply; each is refused rather than silently ignored
_UNSUPPORTED = {
    "use_dora": "DoRA (use_dora) is not supported",
    "lora_bias": "LoRA bias (lora_bias) is not supported",
    "fan_in_fan_out": "fan_in_fan_out adapters (Conv1D layers) are not supported",
}


@dataclass(frozen=True)
class LoraSettings:
    r: int
    lora_alpha: float
    use_rslora: bool = False
    rank_pattern: dict[str, int] = field(default_factory=dict)
    alpha_pattern: dict[str, float] = field(default_factory=dict)
    target_parameters: tuple[str, ...] = ()
    # the maps' keys as PEFT matches them, on RE2 (raises PatternError for a key RE2 refuses)
    rank_keys: PatternKeys = field(init=False, repr=False, compare=False)
    alpha_keys: PatternKeys = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "rank_keys", PatternKeys(self.rank_pattern))
        object.__setattr__(self, "alpha_keys", PatternKeys(self.alpha_pattern))

    def rank_for(self, pattern_name: str) -> int:
        key = self.rank_keys.first(pattern_name)
        return int(self.rank_pattern[key]) if key is not None else self.r

    def alpha_for(self, pattern_name: str) -> float:
        key = self.alpha_keys.first(pattern_name)
        return float(self.alpha_pattern[key]) if key is not None else self.lora_alpha

    def scaling_for(self, pattern_name: str) -> float:
        rank = self.rank_for(pattern_name)
        alpha = self.alpha_for(pattern_name)
        return alpha / math.sqrt(rank) if self.use_rslora else alpha / rank

    def targets_parameter(self, param: str) -> bool:
        return any(p == param or p.endswith(f".{param}") for p in self.target_parameters)


def parse_settings(config: dict[str, Any]) -> tuple[LoraSettings | None, list[Problem]]:
    problems: list[Problem] = []
    if str(config.get("peft_type", "LORA")).upper() != "LORA":
        problems.append(Problem(LOAD_FAILED, f"peft_type {config.get('peft_type')!r} is not LORA"))
    for key, message in _UNSUPPORTED.items():
        if config.get(key):
            problems.append(Problem(LOAD_FAILED, message))
    r, alpha = config.get("r"), config.get("lora_alpha", config.get("r"))
    if not isinstance(r, int) or isinstance(r, bool) or r <= 0:
        problems.append(Problem(LOAD_FAILED, f"r must be a positive integer, got {r!r}"))
    if not isinstance(alpha, (int, float)) or isinstance(alpha, bool) or not math.isfinite(alpha):
        problems.append(Problem(LOAD_FAILED, f"lora_alpha must be a finite number, got {alpha!r}"))
    rank_pattern = config.get("rank_pattern") or {}
    alpha_pattern = config.get("alpha_pattern") or {}
    if not isinstance(rank_pattern, dict) or not isinstance(alpha_pattern, dict):
        problems.append(Problem(LOAD_FAILED, "rank_pattern and alpha_pattern must be objects"))
    else:
        problems += _pattern_problems("rank_pattern", rank_pattern) + _pattern_problems("alpha_pattern", alpha_pattern)
    target_parameters = config.get("target_parameters") or []
    if not isinstance(target_parameters, list) or not all(isinstance(p, str) for p in target_parameters):
        problems.append(Problem(LOAD_FAILED, "target_parameters must be a list of strings"))
    if problems:
        return None, problems
    settings = LoraSettings(
        r=r,
        lora_alpha=float(alpha),
        use_rslora=bool(config.get("use_rslora", False)),
        rank_pattern=dict(rank_pattern),
        alpha_pattern=dict(alpha_pattern),
        target_parameters=tuple(target_parameters),
    )
    return settings, []


def _pattern_problems(name: str, patterns: dict[str, Any]) -> list[Problem]:
    """A pending LoRA is servable before the validator has looked at it: its keys are checked here too."""
    try:
        PatternKeys(patterns)
    except PatternError as error:
        return [Problem(LOAD_FAILED, f"{name}: {error}")]
    return []
