"""On-disk snapshots of mongomock collections: one Extended JSON file per collection.

Layout: `<root>/<database>/<collection>.json` beside its journal `<collection>.journal`
(see `journal`), names percent-encoded (dots too, so no name can climb out of the root).
A snapshot holds the collection's index definitions (unique indexes must survive a
restart), its documents in insertion order, in canonical Extended JSON so ints, longs,
doubles, dates and ObjectIds come back as they went in, and `seq`: the last journal
record it already contains. A dropped collection keeps a snapshot that says so, so that
journal records written before the drop can never bring it back.
Files are replaced atomically (write a temporary file, fsync, rename, fsync the directory)
and are readable by their owner only (0600 in 0700 directories).
"""
from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import quote, unquote

from bson import json_util
from bson.binary import UuidRepresentation
from bson.json_util import JSONMode, JSONOptions
from mongomock.store import CollectionStore

from shared.stores.private_files import FILE_MODE, fsync_dir, make_dir

# mongomock keeps datetimes naive (UTC) inside its store; keep them so on the way back
JSON_OPTIONS = JSONOptions(json_mode=JSONMode.CANONICAL, tz_aware=False,
                           uuid_representation=UuidRepresentation.STANDARD)
SUFFIX = ".json"
JOURNAL_SUFFIX = ".journal"


def encode_name(name: str) -> str:
    return quote(name, safe="").replace(".", "%2E")


def collection_path(root: Path, database: str, collection: str) -> Path:
    return root / encode_name(database) / f"{encode_name(collection)}{SUFFIX}"


def journal_path(root: Path, database: str, collection: str) -> Path:
    return root / encode_name(database) / f"{encode_name(collection)}{JOURNAL_SUFFIX}"


def collection_names(root: Path, database: str) -> list[str]:
    """Every collection of the database with a snapshot or a journal on disk."""
    directory = root / encode_name(database)
    if not directory.is_dir():
        return []
    names = {unquote(path.name[: -len(suffix)])
             for suffix in (SUFFIX, JOURNAL_SUFFIX) for path in directory.glob(f"*{suffix}")}
    return sorted(names)


def render(name: str, collection: CollectionStore, seq: int) -> str:
    """The collection's snapshot as of journal record `seq` (a dropped marker when it does not exist)."""
    if not collection.is_created:
        return json_util.dumps({"collection": name, "dropped": True, "seq": seq}, json_options=JSON_OPTIONS)
    indexes = [{"name": index_name, **spec} for index_name, spec in collection.indexes.items()]
    snapshot = {"collection": name, "seq": seq, "indexes": indexes, "documents": list(collection.documents)}
    return json_util.dumps(snapshot, json_options=JSON_OPTIONS)


def restore(collection: CollectionStore, text: str) -> int:
    """Fill `collection` from a snapshot; returns the last journal record it contains."""
    snapshot = json_util.loads(text, json_options=JSON_OPTIONS)
    if snapshot.get("dropped"):
        return int(snapshot.get("seq", 0))
    for index in snapshot["indexes"]:
        spec = {field: value for field, value in index.items() if field != "name"}
        spec["key"] = [tuple(pair) for pair in spec["key"]]
        collection.create_index(index["name"], spec)
    for document in snapshot["documents"]:
        collection[document["_id"]] = document
    collection.create()  # an empty collection with no index still exists after a restart
    return int(snapshot.get("seq", 0))  # snapshots written before the journal existed have none


def read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None


def write(path: Path, text: str) -> None:
    """Replace the snapshot at `path` atomically and durably."""
    make_dir(path.parent)
    partial = path.with_name(path.name + ".tmp")
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    os.fchmod(descriptor, FILE_MODE)  # a leftover .tmp from an older version may be 0644
    with open(descriptor, "w", encoding="utf-8") as file:
        file.write(text)
        file.flush()
        os.fsync(file.fileno())
    os.replace(partial, path)
    fsync_dir(path.parent)
