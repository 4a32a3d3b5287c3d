"""The regular expressions an adapter config carries, run on RE2 with PEFT's matching rules.

`target_modules` / `exclude_modules` given as a string, and the keys of `rank_pattern` and
`alpha_pattern`, come from an uploaded file and run against tens of thousands of module names, in
the validator and in the GPU worker. Python's `re` backtracks: `((.+))+x` takes minutes on one
name and holds the GIL meanwhile, so no thread or timeout protects the caller. RE2 matches in time
linear in the name; it refuses what it cannot do that way (lookarounds, backreferences), and such a
pattern is the config's problem, reported, never run elsewhere. A whole map of keys is matched in
one pass (`re2.Set`), so 64 rank_pattern keys cost about what one does.

PEFT's rules (peft 0.21: `check_target_module_exists`, `get_pattern_key`), written here once:
- a string target_modules / exclude_modules: `re.fullmatch(pattern, module_name)`;
- a rank_pattern / alpha_pattern key: `re.match(rf"(.*\\.)?({key})$", module_name)`; the first key,
  in the config's order, that matches wins.
What a config can notice of RE2 instead of `re`: lookarounds, backreferences, `\\Z` (RE2 spells it
`\\z`), atomic groups and possessive quantifiers are refused; `\\d`, `\\w`, `\\s` are ASCII-only, as
module names are; `$` never matches before a trailing newline, which module names do not have;
flags inside PEFT's wrapper (`(?i)` in a key), which Python refuses, apply to the key alone.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable

import re2

MAX_PATTERN_CHARS = 1000
MAX_PATTERN_ENTRIES = 64
# RE2's budget for one compiled pattern or set: its program and the matcher's state cache. A
# program that does not fit is refused ("pattern too large") rather than grown.
MAX_PROGRAM_BYTES = 8 << 20


class PatternError(ValueError):
    """A pattern RE2 refuses or one over the caps; the message says why, for the user."""


def _options() -> re2.Options:
    options = re2.Options()
    options.log_errors = False  # a refused pattern is the config's problem, reported to its owner
    options.max_mem = MAX_PROGRAM_BYTES
    return options


def _encoded(text: str) -> bytes:
    # a JSON string may hold a lone surrogate: RE2 then sees invalid UTF-8 and refuses the pattern,
    # or matches nothing in the name, instead of the encoder raising
    return text.encode("utf-8", "surrogatepass")


def check(pattern: str) -> None:
    """Raises PatternError when RE2 refuses `pattern` as a whole-name regex, or it is over the cap."""
    _check(pattern, pattern)


def peft_key_regex(key: str) -> str:
    """The regex PEFT builds from a rank_pattern / alpha_pattern key."""
    return rf"(.*\.)?({key})$"


def check_key(key: str) -> None:
    """`check` for a rank_pattern / alpha_pattern key, as PEFT wraps it."""
    _check(key, peft_key_regex(key) if isinstance(key, str) else key)


def _check(pattern: str, regex: str) -> None:
    if not isinstance(pattern, str):
        raise PatternError(f"{_shown(pattern)} is not a string")
    if len(pattern) > MAX_PATTERN_CHARS:
        raise PatternError(f"pattern {_shown(pattern)} is longer than {MAX_PATTERN_CHARS} characters")
    try:
        # re2._Regexp, not re2.compile: compile's LRU cache would keep 128 users' programs alive
        re2._Regexp(_encoded(regex), _options())
    except re2.error as error:
        raise PatternError(f"pattern {_shown(pattern)} is not a regex RE2 accepts: {_reason(error)}") from None


def _compiled_set(patterns: list[str], whole_name: bool) -> Callable[[bytes], list[int]]:
    """The patterns as one RE2 set; the function answers which of them match a UTF-8 name."""
    matcher = (re2.Set.FullMatchSet if whole_name else re2.Set.MatchSet)(_options())
    for pattern in patterns:
        matcher.Add(_encoded(pattern))
    try:
        matcher.Compile()
    except re2.error:
        raise PatternError(f"the {len(patterns)} patterns together are too large for RE2 "
                           f"(over {MAX_PROGRAM_BYTES >> 20} MiB compiled)") from None
    # the compiled set's own Match, past the wrapper's type checks: half the cost of a call, which
    # the validator makes a few hundred thousand times per Kimi adapter
    return matcher._set.Match


class FullMatch:
    """A string target_modules or exclude_modules: does it match the whole module name?"""

    def __init__(self, pattern: str):
        check(pattern)
        self.pattern = pattern
        self._match = _compiled_set([pattern], whole_name=True)

    def matches(self, name: str) -> bool:
        return bool(self._match(_encoded(name)))


class PatternKeys:
    """The keys of a rank_pattern or alpha_pattern map, in the config's order."""

    def __init__(self, keys: Iterable[str]):
        self.keys = tuple(keys)
        if len(self.keys) > MAX_PATTERN_ENTRIES:
            raise PatternError(f"{len(self.keys)} patterns, more than {MAX_PATTERN_ENTRIES}")
        for key in self.keys:
            check_key(key)
        # PEFT's regex ends in `$` and re.match anchors its start: a prefix-anchored set
        self._match = _compiled_set([peft_key_regex(key) for key in self.keys], whole_name=False) if self.keys \
            else None

    def first_index(self, name: str) -> int | None:
        """The position of the key PEFT picks for module `name` (the first that matches), or None."""
        if self._match is None:
            return None
        matches = self._match(_encoded(name))
        return min(matches) if matches else None

    def first(self, name: str) -> str | None:
        index = self.first_index(name)
        return None if index is None else self.keys[index]


def _reason(error: re2.error) -> str:
    reason = error.args[0] if error.args else "refused"
    return reason.decode("utf-8", "replace") if isinstance(reason, bytes) else str(reason)


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
