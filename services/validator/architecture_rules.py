"""Rules for the weights' tensors against the base model's architecture (header only, no data).

Every LoRA tensor must name a targetable module; lora_A is `[r, in]` and lora_B `[out, r]`
for that module (the fused experts stack their E experts along r: `[r*E, in]`, `[out, r*E]`);
r is the config's for that module and within the model's max rank (PEFT's fused gate_up at
2r counts as r); each A has its B; and at least one module is adapted.
"""
from __future__ import annotations

from dataclasses import dataclass

from services.validator import codes
from services.validator.codes import Problems
from services.validator.config_rules import AdapterConfig
from services.validator.keys import (
    EXPERTS_CONTAINER,
    SUFFIX_CHARS,
    KeyProblem,
    LoraKey,
    key_prefix,
    layer_of,
    lora_key,
    lora_part,
    resolve_module,
)
from shared.catalogue.catalogue import PEFT_KEY_ROOT, ModelEntry
from shared.catalogue.engines import capabilities
from shared.catalogue.shapes import Group, ModuleKind, TargetModule
from shared.safetensors_header import SafetensorsHeader, TensorEntry

LORA_DTYPES = frozenset({"F32", "F16", "BF16"})


@dataclass(slots=True)
class AdaptedModule:
    module: TargetModule
    prefix: str
    lora_A: TensorEntry | None = None
    lora_B: TensorEntry | None = None

    @property
    def full_name(self) -> str:
        """The name PEFT matches target_modules and rank_pattern against."""
        return self.prefix.removeprefix(PEFT_KEY_ROOT) + self.module.path


def check_weights(header: SafetensorsHeader, config: AdapterConfig, model: ModelEntry, problems: Problems) -> None:
    adapted = _adapted_modules(header, config, model, problems)
    if not adapted:
        problems.add(codes.ADAPTER_EMPTY, "the weights hold no lora_A/lora_B tensor of any module")
        return
    _check_prefixes(adapted, problems)
    _check_expert_layouts(adapted, problems)
    flagged_patterns: set[str] = set()
    module_prefixes = {prefix: prefix.removeprefix(PEFT_KEY_ROOT) for prefix in model.key_prefixes}
    for entry in adapted:
        _check_module(entry, config, model, problems, flagged_patterns, module_prefixes)
    _check_engine(adapted, model, problems)


def _check_engine(adapted: list[AdaptedModule], model: ModelEntry, problems: Problems) -> None:
    """Every module the engine serving the model would not apply, grouped by reason (one line each)."""
    engine = capabilities(model.engine)
    unapplied: dict[str, list[str]] = {}
    for entry in adapted:
        reason = engine.unapplied_reason(entry.module.group, entry.module.projection)
        if reason is not None:
            unapplied.setdefault(reason, []).append(entry.full_name)
    for reason, names in unapplied.items():
        shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        problems.add(codes.MODULE_UNSUPPORTED_BY_ENGINE, f"{model.id} is served by {engine.name}: {reason} ({shown})")


# a pair: [the first of its tensor names, that tensor's part, lora_A, lora_B]
_SLOTS = {"lora_A": 2, "lora_B": 3}


def _adapted_modules(header: SafetensorsHeader, config: AdapterConfig, model: ModelEntry,
                     problems: Problems) -> list[AdaptedModule]:
    pairs = _pair_tensors(header.tensors, model.key_prefixes, problems)
    adapted = []
    fused_targets = _FusedTargets(config)
    for (prefix, _), (first, part, lora_A, lora_B) in pairs.items():
        key = lora_key(first, prefix, part)
        try:
            module = resolve_module(key, model.shapes, fused_targets.of(key))
        except KeyProblem as problem:
            problems.add(problem.code, f"{problem.message} of {model.id}")
            continue
        adapted.append(AdaptedModule(module, prefix, lora_A, lora_B))
    return adapted


def _pair_tensors(tensors: dict[str, TensorEntry], prefixes: list[str],
                  problems: Problems) -> dict[tuple[str, str], list]:
    """The LoRA tensors by (prefix, name less its lora suffix), in the header's order, reporting
    every other tensor. (The key parser's (prefix, module path, depth) in one string each.)"""
    pairs: dict[tuple[str, str], list] = {}
    for name, tensor in tensors.items():
        try:
            prefix = key_prefix(name, prefixes)
            part = lora_part(name)
        except KeyProblem as problem:
            problems.add(problem.code, problem.message)
            continue
        stem = (prefix, name[:-SUFFIX_CHARS])
        pair = pairs.get(stem)
        if pair is None:
            pair = pairs[stem] = [name, part, None, None]
        pair[_SLOTS[part]] = tensor
    return pairs


class _FusedTargets:
    """Which experts parameters the config targets, per (prefix, layer), asked only for experts keys."""

    def __init__(self, config: AdapterConfig):
        self.targeting = config.targeting
        self.cache: dict[tuple[str, int], list[str]] = {}

    def of(self, key: LoraKey) -> list[str] | None:
        if self.targeting is None or not key.module_path.endswith(EXPERTS_CONTAINER):
            return None
        layer = layer_of(key.module_path)
        if layer is None:
            return None
        if (key.prefix, layer) not in self.cache:
            prefix = key.prefix.removeprefix(PEFT_KEY_ROOT)
            self.cache[(key.prefix, layer)] = self.targeting.fused_targets(layer, prefix)
        return self.cache[(key.prefix, layer)]


def _check_prefixes(adapted: list[AdaptedModule], problems: Problems) -> None:
    prefixes = sorted({entry.prefix for entry in adapted})
    if len(prefixes) > 1:
        problems.add(codes.KEY_PREFIX_MIXED, f"tensors use several key prefixes: {', '.join(prefixes)}")


def _check_expert_layouts(adapted: list[AdaptedModule], problems: Problems) -> None:
    per_expert: set[tuple[str, int]] = set()
    fused: set[tuple[str, int]] = set()
    for entry in adapted:
        group = entry.module.group
        if group is Group.EXPERT:
            per_expert.add((entry.prefix, entry.module.layer))
        elif group is Group.FUSED_EXPERTS:
            fused.add((entry.prefix, entry.module.layer))
    for _, layer in sorted(per_expert & fused):
        problems.add(codes.EXPERTS_LAYOUT_MIXED, f"layer {layer} has both per-expert (mlp.experts.{{e}}.*) "
                     "and fused (mlp.experts.lora_*) tensors")


def _check_module(entry: AdaptedModule, config: AdapterConfig, model: ModelEntry, problems: Problems,
                  flagged_patterns: set[str], module_prefixes: dict[str, str]) -> None:
    a, b = entry.lora_A, entry.lora_B
    plain_pair = a is not None and b is not None and a.dtype in LORA_DTYPES and b.dtype in LORA_DTYPES
    if not plain_pair and not _complete_pair(entry, problems):
        return
    targeting = config.targeting
    if targeting is not None and not targeting.targets(entry.module, module_prefixes[entry.prefix]):
        problems.add(codes.MODULE_NOT_TARGETED,
                     f"{a.name}: {entry.full_name} is not targeted by target_modules/target_parameters")
    configured = _configured_rank(entry, config, model, problems, flagged_patterns)
    _check_shapes(entry, configured, model, problems)


def _complete_pair(entry: AdaptedModule, problems: Problems) -> bool:
    """Reports the tensors' unsupported dtypes and a missing half; True when both halves are there."""
    tensors = [t for t in (entry.lora_A, entry.lora_B) if t is not None]
    for tensor in tensors:
        if tensor.dtype not in LORA_DTYPES:
            problems.add(codes.DTYPE_UNSUPPORTED, f"{tensor.name}: dtype {tensor.dtype}, expected F32, F16 or BF16")
    if entry.lora_A is None or entry.lora_B is None:
        missing = "lora_B" if entry.lora_B is None else "lora_A"
        problems.add(codes.LORA_PAIR_INCOMPLETE, f"{tensors[0].name}: its {missing} is missing")
        return False
    return True


def rank_limit(module: TargetModule, max_rank: int) -> int:
    """PEFT fuses gate and up side by side at rank 2r: per projection that is r."""
    fused_gate_up = module.kind is ModuleKind.EXPERTS and module.projection == "gate_up_proj"
    return 2 * max_rank if fused_gate_up else max_rank


def _configured_rank(entry: AdaptedModule, config: AdapterConfig, model: ModelEntry, problems: Problems,
                     flagged_patterns: set[str]) -> int | None:
    if not config.ranks_known:
        return None
    if not config.rank_patterns:
        return config.rank
    rank, pattern = config.rank_for(entry.full_name)
    limit = rank_limit(entry.module, model.max_rank)
    # ranks above 2 x max were reported with the config; report each pattern once
    if pattern is not None and limit < rank <= 2 * model.max_rank and pattern.key not in flagged_patterns:
        flagged_patterns.add(pattern.key)
        problems.add(codes.RANK_PATTERN_EXCEEDS_MAX,
                     f"rank_pattern[{pattern.key!r}]={rank} sets {entry.full_name}, whose max rank is {limit}")
    return rank


def _check_shapes(entry: AdaptedModule, configured: int | None, model: ModelEntry, problems: Problems) -> None:
    a, b, module = entry.lora_A, entry.lora_B, entry.module
    experts = module.num_experts
    found = a.shape[0] // experts if len(a.shape) == 2 and a.shape[0] % experts == 0 else None
    rank = configured if configured is not None else found
    if rank is None:
        problems.add(codes.SHAPE_MISMATCH, f"{a.name}: expected [r*{experts}, {module.in_features}], "
                     f"found {list(a.shape)}")
        return
    expected_a, expected_b = (rank * experts, module.in_features), (module.out_features, rank * experts)
    if a.shape == expected_a and b.shape == expected_b:
        if configured is None and rank > rank_limit(module, model.max_rank):
            problems.add(codes.RANK_EXCEEDS_MAX, f"{a.name}: rank {rank} is above the max rank "
                         f"{rank_limit(module, model.max_rank)}")
        return
    if found is not None and a.shape[1:] == expected_a[1:] and b.shape == (module.out_features, a.shape[0]):
        problems.add(codes.RANK_MISMATCH, f"{a.name}: rank {found}, but the config gives {entry.full_name} "
                     f"rank {rank}")
        return
    for tensor, expected in ((a, expected_a), (b, expected_b)):
        if tensor.shape != expected:
            problems.add(codes.SHAPE_MISMATCH, f"{tensor.name}: expected {list(expected)}, found {list(tensor.shape)}")
