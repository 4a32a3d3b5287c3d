"""The validator parses a fetched header once, in steps that let each 20 MB stage go, to the same
header `parse_header` gives."""
import json

import pytest

from services.validator.reading import FetchedHeader
from shared import safetensors_header as sh

GOOD = json.dumps({"__metadata__": {"format": "pt"},
                   "w": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]}}).encode()


@pytest.mark.parametrize("raw", [GOOD, b"\xff{}", b"[1]", b"{not json", GOOD.replace(b"[0, 24]", b"[4, 28]")])
def test_parsing_a_fetched_header_equals_parsing_its_bytes(raw):
    file_size = sh.LENGTH_BYTES + len(raw) + 24
    header = FetchedHeader(raw, file_size, sh.DEFAULT_LIMITS).parse()
    expected = sh.parse_header(raw, file_size)
    assert (header.tensors, header.metadata, header.problems, header.header_length) == (
        expected.tensors, expected.metadata, expected.problems, expected.header_length)


def test_a_header_that_could_not_be_read_is_its_problem():
    problem = sh.HeaderProblem(sh.HEADER_TRUNCATED, "the header could not be read whole")
    assert FetchedHeader(problem, 100, sh.DEFAULT_LIMITS).parse().problems == [problem]


def test_the_bytes_are_let_go_once_parsed():
    fetched = FetchedHeader(GOOD, sh.LENGTH_BYTES + len(GOOD) + 24, sh.DEFAULT_LIMITS)
    assert fetched.parse().ok
    assert fetched.raw is None
    with pytest.raises(RuntimeError):
        fetched.parse()
