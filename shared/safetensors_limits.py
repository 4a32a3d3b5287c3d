"""What one safetensors header may cost to parse, checked before `json.loads` builds anything.

A caller derives `HeaderLimits` from the model an adapter is for; `check_structure` bounds the
objects, JSON values, strings and nesting from the header's punctuation. Parsed JSON takes ~5x its
bytes on average but up to ~30x for `{}` or `[]`, so the byte cap alone bounds nothing useful.
"""
from __future__ import annotations

from dataclasses import dataclass

HEADER_TOO_LARGE = "header_too_large"
HEADER_NOT_JSON = "header_not_json"
MAX_HEADER_BYTES = 100 * 1024 * 1024  # the reference parser's cap: a ceiling over every model's own


@dataclass(frozen=True)
class HeaderProblem:
    code: str
    message: str
    tensor: str | None = None



# -- what one header may cost -----------------------------------------------------------------
# `"<name>":{"dtype":"<up to 11>","shape":[<2 dims>],"data_offsets":[<2 offsets>]},` is at most 138 bytes
# besides the name with 20-digit numbers (a LoRA tensor is 2-D); 160 leaves room for spacing
ENTRY_BYTES_BESIDES_NAME = 160
VALUES_PER_ENTRY = 16  # a 2-D tensor's entry is 12 JSON values: its key, 3 fields and their keys, 2 dims, 2 offsets
STRINGS_PER_ENTRY = 6  # ... 5 of them strings: its key, the 3 field names and the dtype
METADATA_BYTES = 1 << 20  # __metadata__ (PEFT writes {"format": "pt"}) may add this much
METADATA_VALUES = 4096  # ... and this many values (and strings): 2048 string pairs
MAX_DEPTH = 3  # the header's object, an entry's object, a shape or data_offsets list


@dataclass(frozen=True)
class HeaderLimits:
    """What one header may hold; `of` names whose limits they are, for messages."""

    max_bytes: int
    max_entries: int  # tensors, and __metadata__
    max_values: int  # JSON values: what `json.loads` makes an object of, give or take the small ints
    max_strings: int  # of those, strings (the largest objects per byte of JSON)
    max_depth: int = MAX_DEPTH
    of: str = "a safetensors header"

    @classmethod
    def for_adapter(cls, tensors: int, longest_name: int, of: str) -> HeaderLimits:
        """The limits of an adapter of at most `tensors` tensors, none named longer than `longest_name`."""
        size = tensors * (longest_name + ENTRY_BYTES_BESIDES_NAME) + METADATA_BYTES
        return cls(max_bytes=min(size, MAX_HEADER_BYTES), max_entries=tensors + 1,
                   max_values=tensors * VALUES_PER_ENTRY + METADATA_VALUES,
                   max_strings=tensors * STRINGS_PER_ENTRY + METADATA_VALUES, of=of)


DEFAULT_LIMITS = HeaderLimits.for_adapter(tensors=1 << 18, longest_name=128, of="a safetensors header")



def check_structure(raw: bytes, limits: HeaderLimits) -> HeaderProblem | None:
    """Bounds what `json.loads(raw)` would build, before it builds anything: objects (entries), JSON
    values, strings and nesting, from the JSON punctuation in `raw`. Counting over all of it takes a
    few ms per MB; a comma, bracket or escaped quote inside a string counts too, so only when a limit
    is passed are the strings cut out and the punctuation counted again (slower, exact)."""
    if _structure_problem(*_punctuation_anywhere(raw), limits) is None:
        return None
    return _structure_problem(*_punctuation_outside_strings(raw), limits)


_PUNCTUATION = b',:{}[]"'
_NOT_PUNCTUATION = bytes(sorted(set(range(256)) - set(_PUNCTUATION)))
_BRACKETS_AS_PARENS = bytes.maketrans(b"{}[]", b"()()")
_SCAN_CHUNK = 1 << 16  # bytes split at a time: a chunk's pieces are all the memory the exact count takes


def _structure_problem(punctuation: bytes, strings: int, limits: HeaderLimits) -> HeaderProblem | None:
    """`punctuation`: the , : { } [ ] of the header outside its strings, in order."""
    objects = punctuation.count(b"{")  # the header's own, then one per entry that is an object
    if objects > limits.max_entries + 1:
        return HeaderProblem(HEADER_TOO_LARGE, f"header has over {limits.max_entries} entries, more than "
                             f"{limits.of} can have")
    values = len(punctuation) - punctuation.count(b"}") - punctuation.count(b"]")  # each , : { [ opens one
    if values > limits.max_values:
        return HeaderProblem(HEADER_TOO_LARGE, f"header holds over {limits.max_values} JSON values, more than "
                             f"{limits.of} can hold")
    if strings > limits.max_strings:
        return HeaderProblem(HEADER_TOO_LARGE, f"header holds over {limits.max_strings} strings, more than "
                             f"{limits.of} can hold")
    brackets = punctuation.translate(_BRACKETS_AS_PARENS, b",:")
    for _ in range(limits.max_depth):  # each round takes away the innermost level
        brackets = brackets.replace(b"()", b"")
    if brackets:
        return HeaderProblem(HEADER_NOT_JSON, f"header nests deeper than {limits.max_depth} levels, or its brackets "
                             "do not pair up: a safetensors header is a flat map of tensor entries")
    return None


def _punctuation_anywhere(raw: bytes) -> tuple[bytes, int]:
    punctuation = raw.translate(None, _NOT_PUNCTUATION)
    return punctuation.replace(b'"', b""), punctuation.count(b'"') // 2


def _punctuation_outside_strings(raw: bytes) -> tuple[bytes, int]:
    # escapes pair up from the left as JSON reads them: escaped backslashes first, then escaped quotes;
    # then every quote left opens or closes a string
    unescaped = raw.replace(b"\\\\", b"").replace(b'\\"', b"")
    found, in_string = [], False
    for begin in range(0, len(unescaped), _SCAN_CHUNK):
        pieces = unescaped[begin:begin + _SCAN_CHUNK].split(b'"')  # alternately outside and inside strings
        found.append(b"".join(pieces[in_string::2]).translate(None, _NOT_PUNCTUATION))
        in_string ^= len(pieces) % 2 == 0  # an odd number of quotes in the chunk
    return b"".join(found), unescaped.count(b'"') // 2
