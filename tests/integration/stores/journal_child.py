"""A process that writes to the embedded document store until it is killed, printing each write that returned.

    python -m tests.integration.stores.journal_child DATA_DIR WRITERS
Each line `writer index` means: t<writer>-<index> was inserted, its `hits` incremented,
the shared counter incremented, and (every third index) the document deleted again.
"""
from __future__ import annotations

import asyncio
import sys

from shared.stores.documents import DocumentStore


async def writer(database, name: int) -> None:
    index = 0
    while True:
        key = f"t{name}-{index}"
        await database.things.insert_one({"_id": key, "n": f"{name}-{index}", "hits": 0})
        await database.things.update_one({"_id": key}, {"$inc": {"hits": 1}})
        await database.counters.update_one({"_id": "c"}, {"$inc": {"v": 1}}, upsert=True)
        if index % 3 == 0:
            await database.things.delete_one({"_id": key})
        print(name, index, flush=True)
        index += 1


async def main(root: str, writers: int) -> None:
    store = DocumentStore(data_dir=root, compact_records=50)  # compactions happen during the run too
    database = store.database("crash")
    await database.things.create_index("n", unique=True)
    print("ready", flush=True)
    await asyncio.gather(*(writer(database, name) for name in range(writers)))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
