"""What the document journal records for a write, and how a record is replayed.

The journal records operations, not their results: the method name and its bound
arguments in canonical Extended JSON, replayed in order over the snapshot they followed.
Why operations: a result record must hold whole documents, and an upload's document
grows with each of its up to 10,000 parts (`$push`), so recording results would write
O(parts²) bytes; an operation is a few hundred bytes. Replay is exact because every
journaled operation is deterministic given the state it ran on: mongomock runs each write
on the event loop's thread to the end before the next (record order is execution order),
documents keep their insertion order in snapshots, an insert's generated `_id` is written
into its document before the record is made, and datetimes are cut to milliseconds both
by mongomock and by Extended JSON. What is not deterministic (an upsert that generates
its `_id`, `$currentDate`, update pipelines), `bulk_write`, and what changes a
collection's shape (indexes, drops, renames) is not journaled: the collection is
snapshotted whole instead, which is exact too, only slower.
A write that changed nothing (no match, nothing modified) is not recorded, so polling
claims (a `find_one_and_update` that finds nothing) cost no fsync.
"""
from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

import mongomock
from pymongo.errors import PyMongoError

INSERTS = frozenset({"insert_one", "insert_many"})
UPDATES = frozenset({"update_one", "update_many", "replace_one"})
DELETES = frozenset({"delete_one", "delete_many"})
FIND_AND_MODIFY = frozenset({"find_one_and_update", "find_one_and_replace", "find_one_and_delete"})
REPLAYED = INSERTS | UPDATES | DELETES | FIND_AND_MODIFY
SNAPSHOTTED = frozenset({"bulk_write", "create_index", "create_indexes", "drop_index", "drop_indexes", "drop"})
# these may change some documents and then raise (an ordered insert_many stopping at a duplicate key)
PARTIAL_ON_ERROR = frozenset({"insert_many", "update_many", "delete_many", "bulk_write"})
NONDETERMINISTIC_UPDATES = ("$currentDate",)

_SIGNATURES = {name: inspect.signature(getattr(mongomock.collection.Collection, name)) for name in REPLAYED}


def bind(op: str, args: tuple, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The call's arguments by name (positional ones too), as the replay passes them."""
    bound = _SIGNATURES[op].bind(None, *args, **kwargs)
    arguments = dict(bound.arguments)
    arguments.pop("self", None)
    arguments.update(arguments.pop("kwargs", {}))
    return arguments


def materialized(op: str, args: tuple, kwargs: dict[str, Any]) -> tuple[tuple, dict[str, Any]]:
    """insert_many may be given a generator: make it a list, so the record can still read it."""
    if op != "insert_many":
        return args, kwargs
    if args:
        return (list(args[0]), *args[1:]), kwargs
    if "documents" in kwargs:
        return args, {**kwargs, "documents": list(kwargs["documents"])}
    return args, kwargs


def _pins_id(spec: Any) -> bool:
    if not isinstance(spec, Mapping) or spec.get("_id") is None:
        return False
    value = spec["_id"]
    return not (isinstance(value, Mapping) and any(str(key).startswith("$") for key in value))


def replayable(op: str, arguments: dict[str, Any]) -> bool:
    if op not in REPLAYED:
        return False
    update = arguments.get("update")
    if isinstance(update, list):
        return False
    if isinstance(update, Mapping) and any(key in update for key in NONDETERMINISTIC_UPDATES):
        return False
    return not (arguments.get("upsert") and not _pins_id(arguments.get("filter")))


def changed(op: str, result: Any, arguments: dict[str, Any]) -> bool:
    """Whether a write that returned may have changed the collection."""
    if op in INSERTS:
        return True
    if op in UPDATES:
        return result.modified_count > 0 or result.upserted_id is not None
    if op in DELETES:
        return result.deleted_count > 0
    # find_one_and_*: the document it found (an upsert answering the old document answers None)
    return result is not None or bool(arguments.get("upsert"))


def replay(collection: mongomock.collection.Collection, record: Mapping[str, Any]) -> None:
    arguments = dict(record["args"])
    if arguments.get("sort"):
        arguments["sort"] = [tuple(pair) if isinstance(pair, list) else pair for pair in arguments["sort"]]
    try:
        getattr(collection, record["op"])(**arguments)
    except PyMongoError:
        pass  # it raised the same way when it ran, after the same partial effect
