"""On-disk snapshots of mongomock collections: one Extended JSON file per collection.

Layout: `<root>/<database>/<collection>.json`, names percent-encoded (dots too, so no
name can climb out of the root). A file holds the collection's index definitions
(unique indexes must survive a restart) and its documents in insertion order, in
canonical Extended JSON so ints, longs, doubles, dates and ObjectIds come back as they
went in. Files are replaced atomically (write a temporary file, fsync, rename).
"""
from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import quote, unquote

from bson import json_util
from bson.binary import UuidRepresentation
from bson.json_util import JSONMode, JSONOptions
from mongomock.store import CollectionStore, DatabaseStore

# mongomock keeps datetimes naive (UTC) inside its store; keep them so on the way back
JSON_OPTIONS = JSONOptions(json_mode=JSONMode.CANONICAL, tz_aware=False,
                           uuid_representation=UuidRepresentation.STANDARD)
SUFFIX = ".json"


def encode_name(name: str) -> str:
    return quote(name, safe="").replace(".", "%2E")


def collection_path(root: Path, database: str, collection: str) -> Path:
    return root / encode_name(database) / f"{encode_name(collection)}{SUFFIX}"


def render(name: str, collection: CollectionStore) -> str | None:
    """The collection's snapshot, or None when it no longer exists (dropped)."""
    if not collection.is_created:
        return None
    indexes = [{"name": index_name, **spec} for index_name, spec in collection.indexes.items()]
    snapshot = {"collection": name, "indexes": indexes, "documents": list(collection.documents)}
    return json_util.dumps(snapshot, json_options=JSON_OPTIONS)


def restore(collection: CollectionStore, text: str) -> None:
    snapshot = json_util.loads(text, json_options=JSON_OPTIONS)
    for index in snapshot["indexes"]:
        spec = {field: value for field, value in index.items() if field != "name"}
        spec["key"] = [tuple(pair) for pair in spec["key"]]
        collection.create_index(index["name"], spec)
    for document in snapshot["documents"]:
        collection[document["_id"]] = document
    collection.create()  # an empty collection with no index still exists after a restart


def load_database(root: Path, database: str, store: DatabaseStore) -> int:
    """Fill `store` from the database's snapshot files; returns how many collections were read."""
    directory = root / encode_name(database)
    if not directory.is_dir():
        return 0
    files = sorted(directory.glob(f"*{SUFFIX}"))
    for path in files:
        collection_name = unquote(path.name[: -len(SUFFIX)])
        restore(store[collection_name], path.read_text(encoding="utf-8"))
    return len(files)


def write(path: Path, text: str | None) -> None:
    """Replace the snapshot at `path` atomically; None removes it."""
    if text is None:
        path.unlink(missing_ok=True)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".tmp")
    with open(partial, "w", encoding="utf-8") as file:
        file.write(text)
        file.flush()
        os.fsync(file.fileno())
    os.replace(partial, path)


def write_all(snapshots: list[tuple[Path, str | None]]) -> None:
    for path, text in snapshots:
        write(path, text)
