"""Object ids that sort by creation time, so a cursor is just the last id seen."""
from __future__ import annotations

import secrets
import time

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def _ulid(now_ms: int | None = None) -> str:
    """26 characters: 48 bits of milliseconds then 80 random bits, Crockford base32."""
    millis = int(time.time() * 1000) if now_ms is None else now_ms
    value = (millis << 80) | secrets.randbits(80)
    out = []
    for _ in range(26):
        out.append(_CROCKFORD[value & 31])
        value >>= 5
    return "".join(reversed(out))


def new_file_id(now_ms: int | None = None) -> str:
    return f"file-{_ulid(now_ms)}"


def new_upload_id(now_ms: int | None = None) -> str:
    return f"upload_{_ulid(now_ms)}"


def new_part_id(now_ms: int | None = None) -> str:
    return f"part_{_ulid(now_ms)}"
