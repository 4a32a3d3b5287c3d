"""Every LoRA-targetable module of a DeepseekV3 text stack, with its shape, from the HF config alone.

Names are relative to the decoder stack (`layers.{i}...`, as they follow a key prefix such
as `base_model.model.model.`). Kimi-K2.6 has ~70 thousand targetable modules, so nothing
is materialised: a name is resolved by parsing it against a handful of `NameTemplate`s,
and `iter_modules()` expands them lazily.

Shapes follow torch: a Linear's weight is `[out, in]`; the fused experts parameters are
`[E, out, in]` (`gate_up_proj [E, 2*moe_inter, hidden]`, `down_proj [E, hidden, moe_inter]`);
the router's weight is `[E, hidden]`.
"""
from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import Enum
from functools import cached_property
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from shared.catalogue.catalogue import Architecture

ATTENTION_PROJECTIONS = ("q_a_proj", "q_b_proj", "kv_a_proj_with_mqa", "kv_b_proj", "o_proj")
MLP_PROJECTIONS = ("gate_proj", "up_proj", "down_proj")
FUSED_EXPERT_PARAMS = ("gate_up_proj", "down_proj")  # in the order the experts module defines them


class ModuleKind(str, Enum):
    LINEAR = "linear"  # an nn.Linear, weight [out, in]
    EXPERTS = "experts"  # a fused 3-D experts parameter [E, out, in]
    ROUTER = "router"  # the MoE router's 2-D weight [E, hidden]; a parameter, not a Linear


class Group(str, Enum):
    ATTENTION = "attention"
    DENSE_MLP = "dense_mlp"
    SHARED_EXPERTS = "shared_experts"
    EXPERT = "expert"  # one routed expert's Linear (the per-expert layout)
    FUSED_EXPERTS = "fused_experts"
    ROUTER = "router"


class TargetModule(NamedTuple):  # a NamedTuple: ~70 thousand are made per Kimi adapter
    path: str
    kind: ModuleKind
    group: Group
    projection: str  # the leaf name: q_b_proj, gate_up_proj, gate, ...
    layer: int
    expert: int | None
    shape: tuple[int, ...]

    @property
    def out_features(self) -> int:
        return self.shape[-2]

    @property
    def in_features(self) -> int:
        return self.shape[-1]

    @property
    def num_experts(self) -> int:
        """How many experts one LoRA of this target spans (PEFT stacks them along r)."""
        return self.shape[0] if self.kind is ModuleKind.EXPERTS else 1


@dataclass(frozen=True)
class IndexRange:
    """A name component that is a decimal index in [start, stop)."""

    start: int
    stop: int

    def matches(self, component: str) -> bool:
        if not (component.isascii() and component.isdigit()) or (len(component) > 1 and component[0] == "0"):
            return False
        return self.start <= int(component) < self.stop

    def values(self) -> range:
        return range(self.start, self.stop)


Token = str | IndexRange
_INDEX = "(0|[1-9][0-9]*)"
_new_tuple = tuple.__new__


@dataclass(frozen=True)
class NameTemplate:
    """A family of dotted names, e.g. ("layers", IndexRange(1, 61), "mlp", "experts", IndexRange(0, 384), "up_proj")."""

    tokens: tuple[Token, ...]
    regex: re.Pattern[str] = field(init=False, repr=False, compare=False)
    ranges: tuple[IndexRange, ...] = field(init=False, repr=False, compare=False)
    _bounds: tuple[tuple[int, int], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        pattern = r"\.".join(_INDEX if isinstance(t, IndexRange) else re.escape(t) for t in self.tokens)
        object.__setattr__(self, "regex", re.compile(pattern))
        object.__setattr__(self, "ranges", tuple(t for t in self.tokens if isinstance(t, IndexRange)))
        object.__setattr__(self, "_bounds", tuple((r.start, r.stop) for r in self.ranges))  # read per name

    def indices(self, path: str) -> tuple[int, ...] | None:
        """The indices in `path` if it is one of this family's names, else None."""
        found = self.regex.fullmatch(path)
        if found is None:
            return None
        values = tuple(map(int, found.groups()))
        for (start, stop), value in zip(self._bounds, values):
            if not start <= value < stop:
                return None
        return values

    def matches_suffix(self, components: list[str], prefix: tuple[str, ...] = ()) -> bool:
        """True if `components` are the last parts of some name `prefix + template` (PEFT's `endswith("." + t)`)."""
        full = (*prefix, *self.tokens)
        if not components or len(components) > len(full):
            return False
        return all(_token_matches(token, part) for token, part in zip(full[-len(components):], components))

    def expand(self) -> Iterator[tuple[str, ...]]:
        yield from _expand(self.tokens)


def _token_matches(token: Token, component: str) -> bool:
    return token == component if token.__class__ is str else token.matches(component)


def _expand(tokens: tuple[Token, ...]) -> Iterator[tuple[str, ...]]:
    if not tokens:
        yield ()
        return
    head, rest = tokens[0], tokens[1:]
    heads = [head] if isinstance(head, str) else [str(value) for value in head.values()]
    for value in heads:
        for tail in _expand(rest):
            yield (value, *tail)


@dataclass(frozen=True)
class Family:
    """One template plus what every module it names is."""

    template: NameTemplate
    kind: ModuleKind
    group: Group
    shape: tuple[int, ...]

    @cached_property  # a frozen dataclass without slots: cached_property writes its __dict__ directly
    def projection(self) -> str:
        tokens = self.template.tokens
        return str(tokens[-2] if self.kind is ModuleKind.ROUTER else tokens[-1])

    def module(self, path: str, indices: tuple[int, ...]) -> TargetModule:
        expert = indices[1] if len(indices) > 1 else None
        # tuple.__new__ skips the NamedTuple's Python-level __new__: ~70 thousand per Kimi adapter
        return _new_tuple(TargetModule, (path, self.kind, self.group, self.projection, indices[0], expert,
                                         self.shape))


class ModuleShapes:
    """The targetable modules of one architecture; cheap to build, resolves names by parsing."""

    def __init__(self, arch: Architecture):
        self.arch = arch
        layers = arch.num_hidden_layers
        first_moe = min(arch.first_k_dense_replace, layers) if arch.n_routed_experts > 0 else layers
        self.dense_layers = IndexRange(0, first_moe)
        self.moe_layers = IndexRange(first_moe, layers)
        self.experts = IndexRange(0, arch.n_routed_experts)
        self.families = self._families()
        # the last component of a template is always a literal: index by it and the number of dots
        self._by_leaf: dict[tuple[str, int], list[Family]] = {}
        for family in self.families:
            tokens = family.template.tokens
            dots = len(tokens) - 1 + sum(token.count(".") for token in tokens if isinstance(token, str))
            self._by_leaf.setdefault((str(tokens[-1]).rpartition(".")[2], dots), []).append(family)
        # when no two families share it, `family_key(module)` tells a module's family: callers may cache by it
        family_keys = {(f.kind, f.group, f.projection) for f in self.families}
        self.family_keys_unique = len(family_keys) == len(self.families)

    # -- shapes --------------------------------------------------------------------
    def _attention_shapes(self) -> dict[str, tuple[int, int]]:
        a = self.arch
        heads, hidden = a.num_attention_heads, a.hidden_size
        return {
            "q_a_proj": (a.q_lora_rank, hidden),
            "q_b_proj": (heads * (a.qk_nope_head_dim + a.qk_rope_head_dim), a.q_lora_rank),
            "kv_a_proj_with_mqa": (a.kv_lora_rank + a.qk_rope_head_dim, hidden),
            "kv_b_proj": (heads * (a.qk_nope_head_dim + a.v_head_dim), a.kv_lora_rank),
            "o_proj": (hidden, heads * a.v_head_dim),
        }

    @staticmethod
    def _mlp_shapes(intermediate: int, hidden: int) -> dict[str, tuple[int, int]]:
        return {"gate_proj": (intermediate, hidden), "up_proj": (intermediate, hidden),
                "down_proj": (hidden, intermediate)}

    def _families(self) -> list[Family]:
        a = self.arch
        every_layer = IndexRange(0, a.num_hidden_layers)
        families = [
            _linear(("layers", every_layer, "self_attn", name), Group.ATTENTION, shape)
            for name, shape in self._attention_shapes().items()
        ]
        families += [
            _linear(("layers", self.dense_layers, "mlp", name), Group.DENSE_MLP, shape)
            for name, shape in self._mlp_shapes(a.intermediate_size, a.hidden_size).items()
        ]
        if self.moe_layers.start >= self.moe_layers.stop:
            return families
        if a.n_shared_experts > 0:
            shared = self._mlp_shapes(a.moe_intermediate_size * a.n_shared_experts, a.hidden_size)
            families += [
                _linear(("layers", self.moe_layers, "mlp", "shared_experts", name), Group.SHARED_EXPERTS, shape)
                for name, shape in shared.items()
            ]
        expert_shapes = self._mlp_shapes(a.moe_intermediate_size, a.hidden_size)
        families += [
            _linear(("layers", self.moe_layers, "mlp", "experts", self.experts, name), Group.EXPERT, shape)
            for name, shape in expert_shapes.items()
        ]
        experts, inter, hidden = a.n_routed_experts, a.moe_intermediate_size, a.hidden_size
        fused = {"gate_up_proj": (experts, 2 * inter, hidden), "down_proj": (experts, hidden, inter)}
        families += [
            Family(NameTemplate(("layers", self.moe_layers, "mlp", "experts", name)), ModuleKind.EXPERTS,
                   Group.FUSED_EXPERTS, shape)
            for name, shape in fused.items()
        ]
        families.append(Family(NameTemplate(("layers", self.moe_layers, "mlp", "gate", "weight")),
                               ModuleKind.ROUTER, Group.ROUTER, (experts, hidden)))
        return families

    # -- lookups -------------------------------------------------------------------
    def resolve(self, path: str) -> TargetModule | None:
        """The module or parameter named `path` (e.g. "layers.3.self_attn.q_b_proj"), or None."""
        for family in self._by_leaf.get((path[path.rfind(".") + 1:], path.count(".")), ()):
            indices = family.template.indices(path)
            if indices is not None:
                return family.module(path, indices)
        return None

    @staticmethod
    def family_key(module: TargetModule) -> tuple[ModuleKind, Group, str]:
        """What all modules of a family share; it names the family when `family_keys_unique`."""
        return module.kind, module.group, module.projection

    def is_moe_layer(self, layer: int) -> bool:
        return self.moe_layers.start <= layer < self.moe_layers.stop

    def iter_modules(self, kinds: frozenset[ModuleKind] | None = None) -> Iterator[TargetModule]:
        """Every targetable module and parameter, lazily (Kimi-K2.6: ~70 thousand)."""
        for family in self.families:
            if kinds is not None and family.kind not in kinds:
                continue
            for components in family.template.expand():
                indices = tuple(int(components[i]) for i, token in enumerate(family.template.tokens)
                                if not isinstance(token, str))
                yield family.module(".".join(components), indices)

    def count(self) -> int:
        total = 0
        for family in self.families:
            size = 1
            for token in family.template.tokens:
                if not isinstance(token, str):
                    size *= len(token.values())
            total += size
        return total


def longest_path_chars(shapes: ModuleShapes) -> int:
    """Characters in the longest module or parameter path, at each family's largest indices."""
    return max(_path_chars(family.template.tokens) for family in shapes.families)


def _path_chars(tokens: tuple[Token, ...]) -> int:
    parts = [len(token) if isinstance(token, str) else len(str(max(token.stop - 1, 0))) for token in tokens]
    return sum(parts) + len(parts) - 1  # and the dots between them


def _linear(tokens: tuple[Token, ...], group: Group, shape: tuple[int, int]) -> Family:
    return Family(NameTemplate(tokens), ModuleKind.LINEAR, group, shape)
