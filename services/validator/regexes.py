"""Compiling the regexes an adapter config carries (target_modules, rank_pattern keys, ...).

They come from an uploaded file and run against ~70 thousand module names, so they are
bounded: a length cap, a refusal of nested quantifiers such as `(a+)+` (the classic shape
of catastrophic backtracking) and of more than a few unbounded quantifiers (polynomial
backtracking). Python's `re` has no timeout and holds the GIL, so this is the only guard.
"""
from __future__ import annotations

import re

MAX_PATTERN_CHARS = 1000
# a failing match tries every split of the name between unbounded quantifiers: n^k steps for k of them
MAX_UNBOUNDED_QUANTIFIERS = 4
# a group containing a quantifier, itself quantified: (x+)+, (x*)*, (x+){2,}, ...
_NESTED_QUANTIFIER = re.compile(r"\((?:[^()\\]|\\.)*[*+}](?:[^()\\]|\\.)*\)[*+{]")
_UNBOUNDED_QUANTIFIER = re.compile(r"(?<!\\)[*+]|\{\d*,\}")


class UnsafePattern(ValueError):
    pass


def compile_pattern(pattern: str, before: str = "", after: str = "") -> re.Pattern[str]:
    """Compile `before + pattern + after`; raises UnsafePattern with a reason a user can act on."""
    if len(pattern) > MAX_PATTERN_CHARS:
        raise UnsafePattern(f"pattern longer than {MAX_PATTERN_CHARS} characters")
    if _NESTED_QUANTIFIER.search(pattern):
        raise UnsafePattern(f"pattern {pattern[:80]!r} nests quantifiers, which can backtrack without end")
    if len(_UNBOUNDED_QUANTIFIER.findall(pattern)) > MAX_UNBOUNDED_QUANTIFIERS:
        raise UnsafePattern(f"pattern {pattern[:80]!r} has more than {MAX_UNBOUNDED_QUANTIFIERS} unbounded "
                            "quantifiers (*, +, {n,})")
    try:
        return re.compile(before + pattern + after)
    except (re.error, RecursionError, OverflowError) as error:
        raise UnsafePattern(f"pattern {pattern[:80]!r} is not a valid regex: {error}") from None


def peft_pattern_key(pattern: str) -> re.Pattern[str]:
    """A rank_pattern / alpha_pattern key as PEFT's `get_pattern_key` matches it."""
    return compile_pattern(pattern, r"(.*\.)?(", r")$")
