"""LoRA name rules (seed: "Naming rules for the name field").

A name shaped like a UUID is refused so that `metadata.lora` and the path `{name|id}`
are never ambiguous.
"""
from __future__ import annotations

import re
import uuid

MIN_NAME, MAX_NAME = 2, 64
NAME_CHARS = re.compile(r"^[a-z0-9-]*$")


def looks_like_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except (ValueError, AttributeError, TypeError):
        return False
    return True


def name_problems(name: str) -> list[str]:
    """Every rule the name breaks, in words a user can act on; empty when the name is valid."""
    problems = []
    if not MIN_NAME <= len(name) <= MAX_NAME:
        problems.append(f"must be {MIN_NAME}-{MAX_NAME} characters long (got {len(name)})")
    if not NAME_CHARS.match(name):
        problems.append("may contain only lowercase letters, digits and dashes ([a-z0-9-])")
    if name and not (name[0].isascii() and name[0].isalnum() and name[-1].isascii() and name[-1].isalnum()):
        problems.append("must start and end with a lowercase letter or digit")
    if looks_like_uuid(name):
        problems.append("must not be shaped like a UUID (UUIDs identify LoRAs by id)")
    return problems
