"""HTTP `Range` on file content: one byte range, else the whole file (RFC 9110 lets a server ignore the rest)."""
from __future__ import annotations

import re
from dataclasses import dataclass

_SINGLE_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
# a byte position past int64 is no file's; longer digit strings would also make int() slow or refuse (>4300 digits)
MAX_POSITION_DIGITS = 19


class RangeNotSatisfiable(ValueError):
    pass


class RangeInvalid(ValueError):
    """A range whose positions no file can have: the caller's mistake, a 400."""


@dataclass(frozen=True)
class ByteRange:
    start: int
    length: int

    def content_range(self, size: int) -> str:
        return f"bytes {self.start}-{self.start + self.length - 1}/{size}"


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """The range to send, or None for the whole file (no header, several ranges or a malformed one)."""
    if not header:
        return None
    match = _SINGLE_RANGE.match(header.strip().replace(" ", ""))
    if match is None:
        return None
    first, last = match.groups()
    if not first and not last:
        return None
    if max(len(first), len(last)) > MAX_POSITION_DIGITS:
        raise RangeInvalid(f"Range positions have at most {MAX_POSITION_DIGITS} digits")
    if not first:
        suffix = int(last)
        if suffix == 0 or size == 0:
            raise RangeNotSatisfiable(header)
        start = max(0, size - suffix)
        return ByteRange(start, size - start)
    start = int(first)
    end = int(last) if last else size - 1
    if last and end < start:
        return None
    if start >= size:
        raise RangeNotSatisfiable(header)
    end = min(end, size - 1)
    return ByteRange(start, end - start + 1)
