"""Reference counts from lora.created / lora.deleted: replays and any delivery order give the same answer."""
from __future__ import annotations

import asyncio

from hypothesis import given, settings
from hypothesis import strategies as st
from mongomock_motor import AsyncMongoMockClient

from services.file_ingest.domain.refs import reference_from
from services.file_ingest.repository import RefRepository
from shared.contracts.messages import AdapterRef, LoraCreated, LoraDeleted

LORAS = ["lora-1", "lora-2", "lora-3"]


def adapter(lora_id: str) -> AdapterRef:
    return AdapterRef(lora_id=lora_id, name=lora_id, config_file_id="file-config", weights_file_id="file-weights",
                      config_object_key="k/c", weights_object_key="k/w")


def test_reference_from_the_adapter_or_else_the_public_lora():
    created = reference_from(LoraCreated(org_id="o", lora={"id": "lora-1"}, adapter=adapter("lora-1")))
    assert created.file_ids == ("file-config", "file-weights") and not created.released
    bare = reference_from(LoraDeleted(org_id="o", lora={"id": "lora-2", "config_file_id": "file-c",
                                                        "weights_file_id": "file-w"}))
    assert bare.lora_id == "lora-2" and bare.file_ids == ("file-c", "file-w") and bare.released
    assert reference_from(LoraCreated(org_id="o", lora={})) is None


events = st.lists(st.tuples(st.sampled_from(LORAS), st.booleans()), max_size=12)


@settings(max_examples=40, deadline=None)
@given(events)
def test_holders_are_the_created_loras_not_deleted_in_any_order(sequence):
    async def fold() -> list[str]:
        refs = RefRepository(AsyncMongoMockClient()["file_ingest"])
        for lora_id, deleted in sequence:
            kind = LoraDeleted if deleted else LoraCreated
            await refs.apply(reference_from(kind(org_id="o", lora={"id": lora_id}, adapter=adapter(lora_id))))
        return sorted(await refs.holders("file-weights"))

    created = {lora for lora, deleted in sequence if not deleted}
    deleted = {lora for lora, deleted in sequence if deleted}
    assert asyncio.run(fold()) == sorted(created - deleted)
