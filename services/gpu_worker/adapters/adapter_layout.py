"""PEFT's saved keys -> the engine's targets, for every layout a user brings.

- Linear modules (attention, dense MLP, shared experts): `layers.{i}.{path}.lora_{A,B}.weight`.
- PEFT `target_parameters` on the fused experts: nested wrappers, the module's first parameter
  (`gate_up_proj`) innermost, so its keys carry one `base_layer.` per targeted parameter after it.
  A is `[r·E, in]` expert-major; B is `[out, r·E]` rank-major (column j·E + e is expert e's rank j).
- The router (`mlp.gate.lora_*`, PEFT's `gate.weight` parameter target).
- Per-expert Linear keys (`mlp.experts.{e}.{gate,up,down}_proj`): gate and up are fused side by side
  into one rank-(r_gate + r_up) factor of `gate_up_proj`, exactly as the fused weight stacks them.
Every tensor is applied; nothing is dropped silently: an unknown key is a problem.
"""
from __future__ import annotations

import re
from collections import defaultdict

import torch

from services.gpu_worker.adapters.adapter_weights import AdapterWeights, LoraFactors
from services.gpu_worker.adapters.lora_config import LoraSettings
from services.gpu_worker.engines.torch_engine.targets import EXPERT_PARAMS, TargetKind, TargetSpec
from services.gpu_worker.errors import LOAD_FAILED, Problem

_LORA_KEY = re.compile(r"^layers\.(\d+)\.(.+)\.lora_([AB])\.weight$")
_PER_EXPERT = re.compile(r"^(.+\.experts)\.(\d+)\.(gate_proj|up_proj|down_proj)$")
_FUSED = re.compile(r"^(.+\.experts)((?:\.base_layer)*)$")
PEFT_MODULE_PREFIX = "model."  # how PEFT names modules when it matches rank/alpha patterns


def strip_prefix(key: str, prefixes: list[str]) -> str | None:
    for prefix in prefixes:
        if key.startswith(prefix):
            return key[len(prefix):]
    return None


def _pair_keys(tensors, prefixes, problems) -> dict[tuple[int, str], dict[str, torch.Tensor]]:
    pairs: dict[tuple[int, str], dict[str, torch.Tensor]] = defaultdict(dict)
    for key, tensor in tensors.items():
        rest = strip_prefix(key, prefixes)
        match = _LORA_KEY.match(rest) if rest is not None else None
        if match is None:
            problems.append(Problem(LOAD_FAILED, f"tensor {key} is not a LoRA A/B weight of a model layer"))
            continue
        layer, module, side = int(match[1]), match[2], match[3]
        pairs[(layer, module)][side] = tensor
    for (layer, module), sides in list(pairs.items()):
        if set(sides) != {"A", "B"}:
            problems.append(Problem(LOAD_FAILED, f"layers.{layer}.{module} has lora_{''.join(sides)} only"))
            del pairs[(layer, module)]
    return pairs


def _check_2d(name, a, b, out_features, in_features, problems) -> bool:
    if a.dim() != 2 or b.dim() != 2 or a.shape[1] != in_features or b.shape[0] != out_features \
            or a.shape[0] != b.shape[1]:
        problems.append(Problem(LOAD_FAILED, f"{name}: lora_A {list(a.shape)} / lora_B {list(b.shape)} do not fit "
                                             f"[r, {in_features}] / [{out_features}, r]"))
        return False
    return True


def _check_rank(name, weights_rank, settings, pattern_name, problems) -> bool:
    configured = settings.rank_for(pattern_name)
    if weights_rank != configured:
        problems.append(Problem(LOAD_FAILED, f"{name}: weights have rank {weights_rank}, "
                                             f"adapter_config says {configured}"))
        return False
    return True


def _linear(name, spec, a, b, settings, problems) -> LoraFactors | None:
    pattern_name = PEFT_MODULE_PREFIX + name + (".weight" if spec.kind is TargetKind.ROUTER else "")
    if not _check_2d(name, a, b, spec.out_features, spec.in_features, problems):
        return None
    if not _check_rank(name, a.shape[0], settings, pattern_name, problems):
        return None
    return LoraFactors(a.float(), b.float() * settings.scaling_for(pattern_name))


def _fused_experts(name, spec, a, b, settings, problems) -> LoraFactors | None:
    experts = spec.num_experts
    if a.dim() != 2 or b.dim() != 2 or a.shape[0] % experts or a.shape[0] != b.shape[1] \
            or a.shape[1] != spec.in_features or b.shape[0] != spec.out_features:
        problems.append(Problem(LOAD_FAILED, f"{name}: lora_A {list(a.shape)} / lora_B {list(b.shape)} do not fit "
                                             f"[r·{experts}, {spec.in_features}] / [{spec.out_features}, r·{experts}]"))
        return None
    rank = a.shape[0] // experts
    pattern_name = PEFT_MODULE_PREFIX + name
    if not _check_rank(name, rank, settings, pattern_name, problems):
        return None
    a3 = a.float().reshape(experts, rank, spec.in_features)
    b3 = b.float().reshape(spec.out_features, rank, experts).permute(2, 0, 1).contiguous()
    return LoraFactors(a3, b3 * settings.scaling_for(pattern_name))


def _fused_param(module_path: str, depth: int, settings: LoraSettings) -> str | None:
    targeted = [p for p in EXPERT_PARAMS if settings.targets_parameter(p)]
    if depth >= len(targeted):
        return None
    return targeted[len(targeted) - 1 - depth]


def _per_expert_factors(layer_path, parts, targets, settings, problems) -> dict[str, LoraFactors]:
    """Per-expert gate/up/down Linears -> the fused experts' factors (zero rank where absent)."""
    gate_up, down = targets.get(f"{layer_path}.gate_up_proj"), targets.get(f"{layer_path}.down_proj")
    if gate_up is None or down is None:
        problems.append(Problem(LOAD_FAILED, f"{layer_path} has no routed experts in this model"))
        return {}
    inter, hidden = gate_up.out_features // 2, gate_up.in_features
    shapes = {"gate_proj": (inter, hidden), "up_proj": (inter, hidden), "down_proj": (hidden, inter)}
    scaled: dict[tuple[int, str], tuple[torch.Tensor, torch.Tensor]] = {}
    for (expert, proj), (a, b) in parts.items():
        name = f"{layer_path}.{expert}.{proj}"
        if expert >= gate_up.num_experts:
            problems.append(Problem(LOAD_FAILED, f"{name}: the model has {gate_up.num_experts} routed experts"))
        elif _check_2d(name, a, b, *shapes[proj], problems) and \
                _check_rank(name, a.shape[0], settings, PEFT_MODULE_PREFIX + name, problems):
            scaled[(expert, proj)] = (a.float(), b.float() * settings.scaling_for(PEFT_MODULE_PREFIX + name))
    factors = {}
    if any(p in ("gate_proj", "up_proj") for _, p in scaled):
        factors[gate_up.name] = _stack_gate_up(scaled, gate_up)
    if any(p == "down_proj" for _, p in scaled):
        factors[down.name] = _stack_experts(scaled, down, "down_proj")
    return factors


def _stack_experts(scaled, spec: TargetSpec, proj: str) -> LoraFactors:
    rank = max(a.shape[0] for (_, p), (a, _) in scaled.items() if p == proj)
    a3 = torch.zeros(spec.num_experts, rank, spec.in_features)
    b3 = torch.zeros(spec.num_experts, spec.out_features, rank)
    for (expert, p), (a, b) in scaled.items():
        if p == proj:
            a3[expert, : a.shape[0]] = a
            b3[expert, :, : a.shape[0]] = b
    return LoraFactors(a3, b3)


def _stack_gate_up(scaled, spec: TargetSpec) -> LoraFactors:
    """gate_up rows are [gate; up]: A = [A_gate; A_up], B = blockdiag(B_gate, B_up)."""
    inter = spec.out_features // 2
    ranks = [sum(scaled[(e, p)][0].shape[0] for p in ("gate_proj", "up_proj") if (e, p) in scaled)
             for e in range(spec.num_experts)]
    rank = max(ranks)
    a3 = torch.zeros(spec.num_experts, rank, spec.in_features)
    b3 = torch.zeros(spec.num_experts, spec.out_features, rank)
    for expert in range(spec.num_experts):
        col = 0
        for half, proj in enumerate(("gate_proj", "up_proj")):
            if (expert, proj) not in scaled:
                continue
            a, b = scaled[(expert, proj)]
            r = a.shape[0]
            a3[expert, col: col + r] = a
            b3[expert, half * inter: (half + 1) * inter, col: col + r] = b
            col += r
    return LoraFactors(a3, b3)


def convert_adapter(settings: LoraSettings, tensors: dict[str, torch.Tensor], targets: dict[str, TargetSpec],
                    key_prefixes: list[str]) -> tuple[AdapterWeights | None, list[Problem]]:
    problems: list[Problem] = []
    factors: dict[str, LoraFactors] = {}
    per_expert: dict[str, dict[tuple[int, str], tuple[torch.Tensor, torch.Tensor]]] = defaultdict(dict)
    for (layer, module), sides in sorted(_pair_keys(tensors, key_prefixes, problems).items()):
        a, b = sides["A"], sides["B"]
        if match := _PER_EXPERT.match(module):
            per_expert[f"layers.{layer}.{match[1]}"][(int(match[2]), match[3])] = (a, b)
            continue
        name = f"layers.{layer}.{module}"
        if match := _FUSED.match(module):
            param = _fused_param(match[1], match[2].count(".base_layer"), settings)
            if param is None:
                problems.append(Problem(LOAD_FAILED, f"{name}: fused expert weights not named in target_parameters"))
                continue
            name = f"layers.{layer}.{match[1]}.{param}"
        spec = targets.get(name)
        if spec is None:
            problems.append(Problem(LOAD_FAILED, f"{name} is not an adaptable module of this model"))
            continue
        convert = _fused_experts if spec.kind is TargetKind.EXPERTS else _linear
        if (converted := convert(name, spec, a, b, settings, problems)) is not None:
            factors[name] = converted
    for layer_path, parts in per_expert.items():
        for name, converted in _per_expert_factors(layer_path, parts, targets, settings, problems).items():
            if name in factors:
                problems.append(Problem(LOAD_FAILED, f"{name} is given both fused and per expert"))
            factors[name] = converted
    if not factors and not problems:
        problems.append(Problem(LOAD_FAILED, "the adapter holds no LoRA weights"))
    return (None if problems else AdapterWeights(factors)), problems
