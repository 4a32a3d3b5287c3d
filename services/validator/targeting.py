"""Which modules an adapter config targets, with PEFT's matching rules, on the catalogue's architecture.

PEFT matches `target_modules` against module names inside the model it wraps
(`model.layers.3.self_attn.q_b_proj`; under Kimi's multimodal wrapper
`language_model.model.layers...`): a list entry matches a name equal to it or ending in
`.` + entry, a string is a regex the whole name must match (on RE2: shared/patterns.py),
`"all-linear"` matches every Linear. `target_parameters` entries match parameter names the same way
(`model.layers.1.mlp.experts.gate_up_proj`, `model.layers.1.mlp.gate.weight`).

Two generations of the experts layout are understood: per-expert Linears
(`mlp.experts.{e}.gate_proj`, targeted by `target_modules`) and the fused 3-D parameters
(targeted by `target_parameters`, or by the old names: PEFT 0.21 remaps `gate_proj`/`up_proj`
to `gate_up_proj`, `down_proj` to `down_proj`, and `gate` to the router's `gate.weight`).
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator

from shared.catalogue.shapes import ModuleKind, ModuleShapes, NameTemplate, TargetModule
from shared.patterns import FullMatch

ALL_LINEAR = "all-linear"
# the fused parameter -> the per-expert Linear names PEFT remaps onto it
OLD_EXPERT_NAMES = {"gate_up_proj": ("gate_proj", "up_proj"), "down_proj": ("down_proj",)}


class NameMatcher:
    """One of target_modules / exclude_modules / target_parameters, as PEFT matches it."""

    def __init__(self, *, everything: bool = False, names: Iterable[str] = (), regex: FullMatch | None = None):
        self.everything = everything
        self.names = frozenset(names)
        self.regex = regex
        # an entry of n dotted parts can only equal the last n parts of a name
        self._suffix_lengths = sorted({name.count(".") + 1 for name in self.names})
        # A name's indices are ASCII digits, so entries without one can only match the parts after
        # its last index: then all names of one template (per prefix) get the same answer.
        self.blind_to_indices = everything or (regex is None and not any(
            digit in name for name in self.names for digit in "0123456789"))

    def matches(self, full_name: str) -> bool:
        if self.everything:
            return True
        if self.regex is not None:
            return self.regex.matches(full_name)
        if full_name in self.names:
            return True
        parts = full_name.split(".")
        return any(".".join(parts[-n:]) in self.names for n in self._suffix_lengths if n < len(parts))


NOTHING = NameMatcher()


class Targeting:
    """Answers "does the config target this module?" for one model's architecture."""

    def __init__(self, shapes: ModuleShapes, modules: NameMatcher, parameters: NameMatcher,
                 exclude: NameMatcher = NOTHING):
        self.shapes = shapes
        self.modules = modules
        self.parameters = parameters
        self.exclude = exclude

        # with every matcher blind to indices, one answer per (prefix, family): Kimi has ~70 thousand
        # modules in a few dozen families
        blind = all(m.blind_to_indices for m in (modules, parameters, exclude))
        self._answers: dict[tuple, bool] | None = {} if blind and shapes.family_keys_unique else None

    def targets(self, module: TargetModule, module_prefix: str) -> bool:
        if self._answers is None:
            return self._targets(module, module_prefix)
        family = (module_prefix, *self.shapes.family_key(module))
        answer = self._answers.get(family)
        if answer is None:
            answer = self._answers[family] = self._targets(module, module_prefix)
        return answer

    def _targets(self, module: TargetModule, module_prefix: str) -> bool:
        full = module_prefix + module.path
        if module.kind is ModuleKind.LINEAR:
            return self._module_targeted(full)
        if self.parameters.matches(full):
            return True
        if module.kind is ModuleKind.ROUTER:
            return self._module_targeted(full.removesuffix(".weight"))
        container = full.rpartition(".")[0]
        return any(self._module_targeted(f"{container}.{old}") for old in OLD_EXPERT_NAMES[module.projection])

    def _module_targeted(self, full_name: str) -> bool:
        return self.modules.matches(full_name) and not (self.exclude is not NOTHING and self.exclude.matches(full_name))

    def fused_targets(self, layer: int, module_prefix: str) -> list[str]:
        """The experts parameters of `layer` this config targets, innermost PEFT wrapper first."""
        names = []
        for param in OLD_EXPERT_NAMES:  # the order the experts module defines its parameters
            module = self.shapes.resolve(f"layers.{layer}.mlp.experts.{param}")
            if module is not None and self.targets(module, module_prefix):
                names.append(param)
        return names


# -- does each config entry name something that exists? ---------------------------------
def module_templates(shapes: ModuleShapes) -> list[NameTemplate]:
    """Names `target_modules` can match: the Linears, the router module, and the old expert names."""
    templates = []
    for family in shapes.families:
        tokens = family.template.tokens
        if family.kind is ModuleKind.LINEAR:
            templates.append(family.template)
        elif family.kind is ModuleKind.ROUTER:
            templates.append(NameTemplate(tokens[:-1]))
        else:
            templates += [NameTemplate((*tokens[:-1], old)) for old in OLD_EXPERT_NAMES[str(tokens[-1])]]
    return templates


def parameter_templates(shapes: ModuleShapes) -> list[NameTemplate]:
    return [f.template for f in shapes.families if f.kind is not ModuleKind.LINEAR]


def unknown_entries(entries: Iterable[str], templates: list[NameTemplate], prefixes: list[str]) -> list[str]:
    """The list entries that are neither a full name nor a dotted suffix of any name."""
    prefix_parts = [tuple(p.rstrip(".").split(".")) for p in prefixes]
    return [
        entry for entry in entries
        if not any(t.matches_suffix(entry.split("."), parts) for t in templates for parts in prefix_parts)
    ]


def regex_matches_any(regex: FullMatch, templates: list[NameTemplate], prefixes: list[str]) -> bool:
    return any(regex.matches(name) for name in _full_names(templates, prefixes))


def _full_names(templates: list[NameTemplate], prefixes: list[str]) -> Iterator[str]:
    for prefix in prefixes:
        for template in templates:
            for components in template.expand():
                yield prefix + ".".join(components)
