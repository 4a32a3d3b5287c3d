"""A pure-Python safetensors header parser with size caps (no torch, no safetensors package).

Layout: an 8-byte little-endian header length N, N bytes of UTF-8 JSON (an object mapping
tensor names to `{dtype, shape, data_offsets}`, plus an optional `__metadata__` string map),
then the data buffer. Only the first 8 + N bytes are ever read; `read_header` takes a ranged
reader so a 40 GB adapter costs two reads of the header's own size. Every problem is reported with its own code
(the validator's result codes); per-tensor problems are all collected, not just the first.

What parsing may cost is bounded by `HeaderLimits` (a caller derives them from the model the
adapter is for): N, and, before `json.loads` builds anything, the entries, the JSON values and the
nesting. Parsed JSON takes ~5x its bytes on average but up to ~30x for `{}` or `[]` (a 50 MiB header
of empty entries took 1.2 GiB), so the byte cap alone bounds nothing useful.
"""
from __future__ import annotations

import json
import math
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import NamedTuple

from shared.safetensors_limits import (  # noqa: F401 (re-exported: the header's API)
    DEFAULT_LIMITS,
    HEADER_NOT_JSON,
    HEADER_TOO_LARGE,
    MAX_HEADER_BYTES,
    HeaderLimits,
    HeaderProblem,
    check_structure,
)

LENGTH_BYTES = 8
PREFIX_BYTES = LENGTH_BYTES + 1  # the length and the first byte of the JSON, which must be "{"
MAX_TENSOR_RANK = 16
MAX_DIMENSION = 1 << 62
MAX_OFFSET = 1 << 64
MAX_PROBLEMS = 1000
METADATA_KEY = "__metadata__"

# bits per element, as the safetensors 0.8 format defines its dtypes
DTYPE_BITS = {
    "BOOL": 8, "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6, "U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8,
    "F8_E8M0": 8, "F8_E4M3FNUZ": 8, "F8_E5M2FNUZ": 8, "I16": 16, "U16": 16, "F16": 16, "BF16": 16,
    "I32": 32, "U32": 32, "F32": 32, "C64": 64, "F64": 64, "I64": 64, "U64": 64,
}
# each dtype's own name object and bits: the 140 thousand tensors of a header share them
_DTYPES = {name: (name, bits) for name, bits in DTYPE_BITS.items()}

# result codes
HEADER_TRUNCATED = "header_truncated"
WEIGHTS_ZIP = "weights_zip"
WEIGHTS_PICKLE = "weights_pickle"
HEADER_NOT_UTF8 = "header_not_utf8"
TENSOR_ENTRY_INVALID = "tensor_entry_invalid"
DTYPE_UNKNOWN = "dtype_unknown"
TENSOR_SIZE_MISMATCH = "tensor_size_mismatch"
OFFSETS_INVALID = "offsets_invalid"
BUFFER_SIZE_MISMATCH = "buffer_size_mismatch"
METADATA_INVALID = "metadata_invalid"

ZIP_MAGIC = b"PK\x03\x04"
PICKLE_PROTOCOLS = range(2, 6)

_new_tuple = tuple.__new__  # makes a NamedTuple without its Python-level __new__


class TensorEntry(NamedTuple):  # a NamedTuple: cheap to make 140 thousand times (see _new_tuple)
    name: str
    dtype: str
    shape: tuple[int, ...]
    start: int  # offsets within the data buffer
    end: int


@dataclass
class SafetensorsHeader:
    header_length: int = 0
    tensors: dict[str, TensorEntry] = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)
    problems: list[HeaderProblem] = field(default_factory=list)
    problems_omitted: int = 0  # past MAX_PROBLEMS, only counted

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def bytes_before_data(self) -> int:
        return LENGTH_BYTES + self.header_length

    def add(self, code: str, message: str, tensor: str | None = None) -> None:
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(HeaderProblem(code, message, tensor))
        else:
            self.problems_omitted += 1


class _Failed(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.problem = HeaderProblem(code, message)


# -- the 8-byte prefix --------------------------------------------------------------
def header_length(prefix: bytes, file_size: int, limits: HeaderLimits = DEFAULT_LIMITS) -> int:
    """The declared header length, after checking it against the file and the cap.

    `prefix` is the start of the file (at least 9 bytes when the file has them). Raises
    `_Failed` with a code naming what the file is instead: a zip, a pickle, truncated, ...
    """
    if file_size < LENGTH_BYTES or len(prefix) < LENGTH_BYTES:
        raise _Failed(HEADER_TRUNCATED, f"file of {file_size} bytes is too short for a safetensors header")
    (length,) = struct.unpack("<Q", prefix[:LENGTH_BYTES])
    looks_like_json = prefix[LENGTH_BYTES:LENGTH_BYTES + 1] == b"{"
    if not looks_like_json or length > limits.max_bytes or LENGTH_BYTES + length > file_size:
        _raise_foreign_format(prefix)
    if length > limits.max_bytes:
        raise _Failed(HEADER_TOO_LARGE, f"header of {length} bytes is over the {limits.max_bytes} bytes "
                      f"{limits.of} can need")
    if LENGTH_BYTES + length > file_size:
        raise _Failed(HEADER_TRUNCATED,
                      f"header declares {length} bytes but the file has {file_size - LENGTH_BYTES} after the length")
    if not looks_like_json:
        raise _Failed(HEADER_NOT_JSON, "header does not start with '{'")
    return length


def _raise_foreign_format(prefix: bytes) -> None:
    if prefix.startswith(ZIP_MAGIC):
        raise _Failed(WEIGHTS_ZIP, "weights file is a zip archive (torch.save?), not safetensors")
    if len(prefix) >= 2 and prefix[0] == 0x80 and prefix[1] in PICKLE_PROTOCOLS:
        raise _Failed(WEIGHTS_PICKLE, "weights file is a pickle, not safetensors")


# -- the JSON header ------------------------------------------------------------------
def parse_header(raw: bytes, file_size: int, limits: HeaderLimits = DEFAULT_LIMITS) -> SafetensorsHeader:
    """Parse the N header bytes (without the 8-byte length) of a file of `file_size` bytes."""
    problem = check_structure(raw, limits)
    text = problem or decode_utf8(raw)
    return from_document(load_json(text) if isinstance(text, str) else text, len(raw), file_size, limits)


# parse_header in four steps, for a caller that lets each input go once the next is built (20 MB each)
def decode_utf8(raw: bytes) -> str | HeaderProblem:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        return HeaderProblem(HEADER_NOT_UTF8, f"header is not UTF-8 (byte {error.start})")


def load_json(text: str) -> dict | HeaderProblem:
    if not text.startswith("{"):
        return HeaderProblem(HEADER_NOT_JSON, "header does not start with '{'")
    try:
        document = json.loads(text)
    except (ValueError, RecursionError) as error:  # JSONDecodeError, oversized ints, deep nesting
        return HeaderProblem(HEADER_NOT_JSON, f"header is not valid JSON: {str(error)[:200]}")
    if not isinstance(document, dict):  # cannot happen after the '{' check; kept for safety
        return HeaderProblem(HEADER_NOT_JSON, "header is not a JSON object")
    return document


def from_document(document: dict | HeaderProblem, header_length: int, file_size: int,
                  limits: HeaderLimits = DEFAULT_LIMITS) -> SafetensorsHeader:
    """The header from its parsed JSON, which this empties (its entries are freed as they are read)."""
    result = SafetensorsHeader(header_length=header_length)
    if isinstance(document, HeaderProblem):
        result.problems.append(document)
        return result
    if len(document) > limits.max_entries:  # entries that are not objects pass `check_structure`'s count
        result.add(HEADER_TOO_LARGE, f"header has {len(document)} entries, more than the {limits.max_entries} "
                   f"{limits.of} can have")
        return result
    _read_metadata(document.pop(METADATA_KEY, None), result)
    # entries without a TensorEntry whose data_offsets are readable still take part in the layout check
    other_regions: list[tuple[int, int, str]] = []
    contiguous_end = _read_tensors(document, result, other_regions)
    if contiguous_end is not None:
        _check_buffer_end(contiguous_end, result, file_size)
    else:
        regions = [(tensor.start, tensor.end, tensor.name) for tensor in result.tensors.values()]
        _check_layout(regions + other_regions, result, file_size)
    return result


def _read_tensors(document: dict, result: SafetensorsHeader,
                  other_regions: list[tuple[int, int, str]]) -> int | None:
    """Fill `result.tensors` in the header's order, reporting each bad entry. Returns where the data
    ends when the regions, in that order, tile the buffer from 0 (then sorting them would find no
    problem, so the layout check needs only that end), else None.

    The hot loop of a 140-thousand-tensor header: each entry is dropped from `document` once read
    (its memory is reused for what replaces it), and equal shapes share one tuple from `shapes`.
    """
    tensors = result.tensors
    shapes: dict[tuple[int, ...], tuple[int, ...]] = {}
    expected: int | None = 0  # where the next region must start while they tile the buffer in order
    for name in list(document):
        entry = document.pop(name)
        tensor = _tensor_entry(name, entry, result, shapes)
        if tensor is not None:
            tensors[name] = tensor
            start, end = tensor.start, tensor.end
        elif type(entry) is dict and _is_offsets(entry.get("data_offsets")):
            start, end = entry["data_offsets"]
            other_regions.append((start, end, name))
        else:
            continue
        if expected is not None:
            expected = end if start == expected else None
    return expected


def _read_metadata(metadata: object, result: SafetensorsHeader) -> None:
    if metadata is None:
        return
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        result.add(METADATA_INVALID, "__metadata__ must be an object of string values")
        return
    result.metadata = metadata


def _is_shape(shape: object) -> bool:
    if type(shape) is not list or len(shape) > MAX_TENSOR_RANK:
        return False
    for dim in shape:  # a plain loop is the fastest check: 140 thousand shapes per Kimi adapter
        if type(dim) is not int or not 0 <= dim <= MAX_DIMENSION:
            return False
    return True


def _is_offsets(offsets: object) -> bool:
    return (type(offsets) is list and len(offsets) == 2 and type(offsets[0]) is int and type(offsets[1]) is int
            and 0 <= offsets[0] <= offsets[1] <= MAX_OFFSET)


def _tensor_entry(name: str, entry: object, result: SafetensorsHeader,
                  shapes: dict[tuple[int, ...], tuple[int, ...]]) -> TensorEntry | None:
    if type(entry) is not dict:
        result.add(TENSOR_ENTRY_INVALID, f"{name}: entry is not an object", name)
        return None
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if not _is_shape(shape):
        result.add(TENSOR_ENTRY_INVALID, f"{name}: shape must be a list of at most {MAX_TENSOR_RANK} "
                   f"non-negative integers, found {_short(shape)}", name)
        return None
    if not _is_offsets(offsets):
        result.add(TENSOR_ENTRY_INVALID, f"{name}: data_offsets must be [begin, end] with 0 <= begin <= end, "
                   f"found {_short(offsets)}", name)
        return None
    known = _DTYPES.get(dtype) if type(dtype) is str else None
    if known is None:
        result.add(DTYPE_UNKNOWN, f"{name}: unknown dtype {_short(dtype)}", name)
        return None
    dtype, bits = known
    key = tuple(shape)  # every dim an int: equal tuples are interchangeable
    tensor = _new_tuple(TensorEntry, (name, dtype, shapes.setdefault(key, key), offsets[0], offsets[1]))
    bits *= math.prod(key)
    span = tensor.end - tensor.start
    if bits % 8:
        result.add(TENSOR_SIZE_MISMATCH, f"{name}: {dtype} {list(tensor.shape)} is {bits} bits, "
                   "not a whole number of bytes", name)
    elif bits // 8 != span:
        result.add(TENSOR_SIZE_MISMATCH, f"{name}: {dtype} {list(tensor.shape)} needs {bits // 8} bytes, "
                   f"data_offsets span {span}", name)
    return tensor


def _check_layout(regions: list[tuple[int, int, str]], result: SafetensorsHeader, file_size: int) -> None:
    """Data regions must tile the buffer from 0 with no gap and no overlap, up to the file's end."""
    expected = 0
    for start, end, name in sorted(regions):
        if start != expected:
            what = "leaves a gap before" if start > expected else "overlaps"
            result.add(OFFSETS_INVALID, f"{name}: data_offsets [{start}, {end}] {what} byte {expected} "
                       "of the buffer", name)
        expected = max(expected, end)
    _check_buffer_end(expected, result, file_size)


def _check_buffer_end(expected: int, result: SafetensorsHeader, file_size: int) -> None:
    buffer_bytes = file_size - result.bytes_before_data
    if expected != buffer_bytes:
        result.add(BUFFER_SIZE_MISMATCH, f"tensors cover {expected} bytes but the file holds {buffer_bytes} "
                   "after the header")


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


# -- whole-header entry points ----------------------------------------------------------
RangeReader = Callable[[int, int], Awaitable[bytes]]


class HeaderStart(NamedTuple):
    length: int  # N, within the limits and the file
    prefix: bytes  # the first bytes read: the length and the header's first byte


async def fetch_header_start(read_range: RangeReader, file_size: int,
                             limits: HeaderLimits = DEFAULT_LIMITS) -> HeaderStart | HeaderProblem:
    """The header's declared length, checked against the file and the limits, from one read of 9 bytes."""
    prefix = await read_range(0, min(file_size, PREFIX_BYTES))
    try:
        return HeaderStart(header_length(prefix, file_size, limits), prefix)
    except _Failed as failed:
        return failed.problem


async def fetch_header_body(read_range: RangeReader, start: HeaderStart) -> bytes | HeaderProblem:
    """The N header bytes, the first of them from `start`: one more read, never the data."""
    rest = await read_range(PREFIX_BYTES, start.length - 1) if start.length > 1 else b""
    raw = start.prefix[LENGTH_BYTES:] + rest
    if len(raw) != start.length:
        return HeaderProblem(HEADER_TRUNCATED, "the header could not be read whole")
    return raw


async def fetch_header_bytes(read_range: RangeReader, file_size: int,
                             limits: HeaderLimits = DEFAULT_LIMITS) -> bytes | HeaderProblem:
    """The N header bytes of a `file_size`-byte file read through `read_range(offset, length)`,
    or the problem that stops them being read. Two reads, 9 + N bytes in all (N within the limits):
    the length and the first byte of the JSON, then the rest of the header; never the data."""
    start = await fetch_header_start(read_range, file_size, limits)
    return start if isinstance(start, HeaderProblem) else await fetch_header_body(read_range, start)


async def read_header(read_range: RangeReader, file_size: int,
                      limits: HeaderLimits = DEFAULT_LIMITS) -> SafetensorsHeader:
    """Read and parse a header (parsing a large one takes CPU: see `fetch_header_bytes`)."""
    raw = await fetch_header_bytes(read_range, file_size, limits)
    return parse_fetched(raw, file_size, limits)


def parse_fetched(raw: bytes | HeaderProblem, file_size: int, limits: HeaderLimits = DEFAULT_LIMITS) -> SafetensorsHeader:
    if isinstance(raw, HeaderProblem):
        return SafetensorsHeader(problems=[raw])
    return parse_header(raw, file_size, limits)


def parse_bytes(data: bytes, limits: HeaderLimits = DEFAULT_LIMITS) -> SafetensorsHeader:
    """Parse the header of a whole safetensors file held in memory (tests, small files)."""
    try:
        length = header_length(data[:LENGTH_BYTES + 1], len(data), limits)
    except _Failed as failed:
        return SafetensorsHeader(problems=[failed.problem])
    return parse_header(data[LENGTH_BYTES:LENGTH_BYTES + length], len(data), limits)
