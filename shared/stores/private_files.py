"""Files and directories of the embedded stores: their owner's alone (0600 / 0700, like keys.json), durable."""
from __future__ import annotations

import os
from pathlib import Path

FILE_MODE = 0o600
DIR_MODE = 0o700


def make_dir(path: Path) -> None:
    """Create the directory and every missing parent owner-only (mkdir's `parents` ignores the mode)."""
    missing = []
    while not path.is_dir():
        missing.append(path)
        path = path.parent
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=DIR_MODE)
        except FileExistsError:
            pass  # made meanwhile by a concurrent writer


def fsync_dir(path: Path) -> None:
    """Make a rename or a new file in `path` survive a power cut."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
