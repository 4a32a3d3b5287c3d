"""Client-given filenames: kept as a label only, never used as a path."""
from __future__ import annotations

import re
import unicodedata

from shared.contracts.files import MAX_FILENAME_CHARS

DEFAULT_FILENAME = "file"
_SEPARATORS = re.compile(r"[/\\]")


class InvalidFilename(ValueError):
    pass


def _has_control_characters(name: str) -> bool:
    return any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") for ch in name)


def clean_filename(raw: str | None) -> str:
    """The last path segment of `raw`, trimmed; control characters are refused.

    Browsers and tools send `C:\\fakepath\\x` or `dir/x`: only `x` is the file's name.
    """
    if raw is None:
        return DEFAULT_FILENAME
    if _has_control_characters(raw):
        raise InvalidFilename("filename must not contain control characters")
    name = _SEPARATORS.split(raw)[-1].strip()
    if name in ("", ".", ".."):
        raise InvalidFilename("filename must name a file, not a directory")
    if len(name) > MAX_FILENAME_CHARS:
        raise InvalidFilename(f"filename must be at most {MAX_FILENAME_CHARS} characters")
    return name
