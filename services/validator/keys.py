"""Tensor names in a PEFT adapter, and the base-model module or parameter each one adapts.

PEFT saves `<prefix><module>.lora_A.weight` / `.lora_B.weight`, the adapter name stripped.
When several parameters of one module are targeted (the fused experts' `gate_up_proj` and
`down_proj`), PEFT nests one `ParamWrapper` per parameter, the first in the module's own
parameter order innermost; each wrapper outside another adds a `.base_layer` to the inner
one's names. So with both targeted, gate_up is `mlp.experts.base_layer.lora_*` and down is
`mlp.experts.lora_*`; with one targeted it is `mlp.experts.lora_*`.
"""
from __future__ import annotations

from typing import NamedTuple

from services.validator import codes
from shared.catalogue.shapes import FUSED_EXPERT_PARAMS, ModuleKind, ModuleShapes, TargetModule

LORA_SUFFIXES = {".lora_A.weight": "lora_A", ".lora_B.weight": "lora_B"}
SUFFIX_CHARS = len(".lora_A.weight")  # both suffixes are this long
BASE_LAYER = ".base_layer"
EXPERTS_CONTAINER = ".mlp.experts"
ROUTER_MODULE = ".mlp.gate"


class KeyProblem(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


class LoraKey(NamedTuple):
    name: str  # the tensor name as saved
    prefix: str  # the accepted key prefix it starts with
    module_path: str  # the wrapped module relative to the prefix, without `.base_layer`s
    depth: int  # how many PEFT wrappers sit outside this one
    part: str  # "lora_A" or "lora_B"


def key_prefix(name: str, prefixes: list[str]) -> str:
    """The first of `prefixes` that `name` starts with; raises KeyProblem when none does."""
    for prefix in prefixes:
        if name.startswith(prefix):
            return prefix
    raise KeyProblem(codes.TENSOR_KEY_INVALID, f"{name}: does not start with one of {', '.join(prefixes)}")


def lora_part(name: str) -> str:
    """Which half of a LoRA pair the tensor is, "lora_A" or "lora_B"; else raises KeyProblem saying what."""
    part = LORA_SUFFIXES.get(name[-SUFFIX_CHARS:])  # both suffixes have the same length
    if part is None:
        raise _not_lora(name)
    return part


def lora_key(name: str, prefix: str, part: str) -> LoraKey:
    """The key of a name already known to start with `prefix` and to end in `part`'s suffix."""
    path = name[len(prefix):-SUFFIX_CHARS]
    depth = 0
    while path.endswith(BASE_LAYER):
        path, depth = path[:-len(BASE_LAYER)], depth + 1
    return LoraKey(name, prefix, path, depth, part)


def _not_lora(name: str) -> KeyProblem:
    if ".lora_magnitude_vector" in name:
        return KeyProblem(codes.DORA_UNSUPPORTED, f"{name}: a DoRA magnitude vector")
    if name.endswith((".lora_A.bias", ".lora_B.bias")):
        return KeyProblem(codes.LORA_BIAS_UNSUPPORTED, f"{name}: a LoRA bias")
    if ".lora_embedding_" in name:
        return KeyProblem(codes.MODULE_UNKNOWN, f"{name}: embeddings are not a LoRA target of this model")
    return KeyProblem(codes.TENSOR_KEY_INVALID,
                      f"{name}: not a lora_A/lora_B weight (a full weight saved by modules_to_save?)")


def resolve_module(key: LoraKey, shapes: ModuleShapes, fused_targets: list[str] | None) -> TargetModule:
    """The module or parameter `key` adapts; `fused_targets` lists the experts parameters the
    config targets in this layer, innermost first (None: unknown, assume both as PEFT saves them)."""
    path = key.module_path
    if path.endswith(EXPERTS_CONTAINER):
        order = fused_targets or list(FUSED_EXPERT_PARAMS)
        index = len(order) - 1 - key.depth
        module = shapes.resolve(f"{path}.{order[index]}") if index >= 0 else None
    elif key.depth:
        module = None
    elif path.endswith(ROUTER_MODULE):
        module = shapes.resolve(f"{path}.weight")
    else:
        module = shapes.resolve(path)
        module = module if module is not None and module.kind is ModuleKind.LINEAR else None
    if module is None:
        raise KeyProblem(codes.MODULE_UNKNOWN, f"{key.name}: names no LoRA-targetable module")
    return module


def layer_of(module_path: str) -> int | None:
    """The layer index of a `layers.{i}...` path."""
    parts = module_path.split(".", 2)
    if len(parts) >= 2 and parts[0] == "layers" and parts[1].isdecimal():
        return int(parts[1])
    return None
