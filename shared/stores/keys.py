"""Object keys shared by every blob store: relative, '/'-separated, no way out of the root."""
from __future__ import annotations

MAX_KEY_LENGTH = 1024  # S3's limit, in UTF-8 bytes


def validate_key(key: str) -> str:
    """Return `key` if it is a safe object key, else raise ValueError.

    Keys come from services, not users, so a bad one is a programming error. The same
    rules hold for both stores so that a key that works in the embedded default works
    in production too.
    """
    if not isinstance(key, str) or not key:
        raise ValueError("blob key must be a non-empty string")
    if len(key.encode()) > MAX_KEY_LENGTH:
        raise ValueError(f"blob key longer than {MAX_KEY_LENGTH} bytes")
    if key.startswith("/") or "\\" in key or "\x00" in key:
        raise ValueError(f"blob key must be relative and '/'-separated: {key!r}")
    parts = key.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise ValueError(f"blob key has an empty, '.' or '..' segment: {key!r}")
    return key
