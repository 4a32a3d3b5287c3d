"""The pure-Python safetensors header parser: agrees with the real format, caps what it reads,
and never crashes on hostile input."""
import asyncio
import json
import struct
import subprocess
import sys

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import save

from services.validator.codes import DESCRIPTIONS
from shared import safetensors_header as sh


def test_a_file_written_by_safetensors_parses_to_its_tensors():
    data = save({"a": torch.zeros(3, 5, dtype=torch.bfloat16), "b": torch.zeros(7), "c": torch.zeros(0, 4)},
                metadata={"format": "pt"})
    header = sh.parse_bytes(data)
    assert header.ok, header.problems
    assert {n: (t.dtype, t.shape) for n, t in header.tensors.items()} == {
        "a": ("BF16", (3, 5)), "b": ("F32", (7,)), "c": ("F32", (0, 4))}
    assert header.metadata == {"format": "pt"}
    assert header.bytes_before_data + 3 * 5 * 2 + 7 * 4 == len(data)


def build(header: dict, data_bytes: int) -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + bytes(data_bytes)


def test_sub_byte_dtypes_must_fill_whole_bytes():
    good = build({"x": {"dtype": "F4", "shape": [4], "data_offsets": [0, 2]}}, 2)
    assert sh.parse_bytes(good).ok
    odd = build({"x": {"dtype": "F4", "shape": [3], "data_offsets": [0, 2]}}, 2)
    assert [p.code for p in sh.parse_bytes(odd).problems] == [sh.TENSOR_SIZE_MISMATCH]


def test_overlapping_regions_are_named():
    header = {"a": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]},
              "b": {"dtype": "U8", "shape": [4], "data_offsets": [2, 6]}}
    problems = sh.parse_bytes(build(header, 6)).problems
    assert [(p.code, p.tensor) for p in problems] == [(sh.OFFSETS_INVALID, "b")]
    assert "overlaps" in problems[0].message


def test_regions_may_be_listed_in_any_order_but_must_tile_the_buffer():
    def header(b_offsets):
        return {"b": {"dtype": "U8", "shape": [4], "data_offsets": b_offsets},
                "empty": {"dtype": "U8", "shape": [0], "data_offsets": [4, 4]},
                "a": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]}}
    assert sh.parse_bytes(build(header([4, 8]), 8)).ok
    problems = sh.parse_bytes(build(header([6, 10]), 10)).problems
    assert [(p.code, p.tensor) for p in problems] == [(sh.OFFSETS_INVALID, "b")]
    assert "leaves a gap before byte 4" in problems[0].message


def test_every_tensor_problem_is_collected():
    header = {f"t{i}": {"dtype": "F99", "shape": [0], "data_offsets": [0, 0]} for i in range(5)}
    problems = sh.parse_bytes(build(header, 0)).problems
    assert [p.tensor for p in problems] == [f"t{i}" for i in range(5)]


def test_deeply_nested_json_is_not_json_rather_than_a_crash():
    raw = b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    problems = sh.parse_bytes(struct.pack("<Q", len(raw)) + raw).problems
    assert [p.code for p in problems] == [sh.HEADER_NOT_JSON]


class CountingReader:
    """A file of `size` bytes whose first bytes are `data` (the rest zeros, never stored)."""

    def __init__(self, data: bytes, size: int):
        self.data, self.size, self.reads = data, size, []

    async def __call__(self, offset: int, length: int) -> bytes:
        self.reads.append((offset, length))
        end = min(offset + length, self.size)
        chunk = self.data[offset:end]
        return chunk + bytes(max(0, min(end, self.size) - offset - len(chunk)))


def test_reading_a_header_reads_the_header_only():
    data = save({"w": torch.zeros(256, 256)})
    length = struct.unpack("<Q", data[:8])[0]
    reader = CountingReader(data, len(data))
    header = asyncio.run(sh.read_header(reader, len(data)))
    assert header.ok and header.tensors["w"].shape == (256, 256)
    assert sum(n for _, n in reader.reads) == 8 + length < len(data) // 100


def test_declared_header_over_the_cap_is_not_read():
    prefix = struct.pack("<Q", 200 * 1024 * 1024) + b"{"
    reader = CountingReader(prefix, 10 * 1024**3)
    header = asyncio.run(sh.read_header(reader, 10 * 1024**3))
    assert [p.code for p in header.problems] == [sh.HEADER_TOO_LARGE]
    assert reader.reads == [(0, 9)]


HEADER_CODES = {code for code in DESCRIPTIONS if code in vars(sh).values()}
SMALL_CAP = 4096
SMALL_LIMITS = sh.HeaderLimits(max_bytes=SMALL_CAP, max_entries=64, max_values=1024, max_strings=512)
values = st.recursive(st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats() | st.text(max_size=8),
                      lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner,
                                                                                   max_size=4), max_leaves=12)
entries = st.fixed_dictionaries({}, optional={
    "dtype": st.sampled_from(sorted(sh.DTYPE_BITS)) | values,
    "shape": st.lists(st.integers(-2, 2**40), max_size=20) | values,
    "data_offsets": st.lists(st.integers(-2, 2**66), min_size=0, max_size=3) | values,
})
headers = st.dictionaries(st.text(max_size=12), entries | values, max_size=8)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=64) | headers.map(lambda h: build(h, 0)), extra=st.integers(0, 64),
       declared=st.integers(0, 2**63))
def test_fuzzed_files_never_crash_and_read_within_the_cap(data, extra, declared):
    for blob in (data, data + bytes(extra), struct.pack("<Q", declared) + data[8:]):
        header = sh.parse_bytes(blob, limits=SMALL_LIMITS)
        assert {p.code for p in header.problems} <= HEADER_CODES
        reader = CountingReader(blob, len(blob) + extra)
        fetched = asyncio.run(sh.read_header(reader, len(blob) + extra, limits=SMALL_LIMITS))
        assert {p.code for p in fetched.problems} <= HEADER_CODES
        assert len(reader.reads) <= 2 and sum(n for _, n in reader.reads) <= sh.PREFIX_BYTES + SMALL_CAP


def test_the_validator_service_does_not_import_torch():
    code = "import sys, services.validator.app; sys.exit(1 if 'torch' in sys.modules else 0)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
