"""The embedded blob store's files on disk: owner-only, and listable for the start-up orphan sweep."""
from __future__ import annotations

import os
import stat

from shared.stores.local_blobs import LocalBlobStore


async def _chunks(*parts: bytes):
    for part in parts:
        yield part


async def test_objects_and_their_directories_are_owner_only(tmp_path):
    os.umask(0o022)
    store = LocalBlobStore(tmp_path / "blobs")
    await store.start()
    await store.put_stream("orgs/org-a/files/file-1", _chunks(b"secret weights"))
    await store.compose("orgs/org-a/files/file-2", ["orgs/org-a/files/file-1"])

    root = tmp_path / "blobs"
    for path in [root, *root.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), f"{path} is {oct(mode)}"


async def test_keys_lists_what_is_stored_under_a_prefix(tmp_path):
    store = LocalBlobStore(tmp_path / "blobs")
    await store.start()
    for key in ("orgs/a/files/f1", "orgs/a/uploads/u1/parts/p1", "orgs/b/files/f2"):
        await store.put_stream(key, _chunks(b"x"))

    assert await store.keys("orgs/a/") == ["orgs/a/files/f1", "orgs/a/uploads/u1/parts/p1"]
    assert await store.keys() == ["orgs/a/files/f1", "orgs/a/uploads/u1/parts/p1", "orgs/b/files/f2"]
