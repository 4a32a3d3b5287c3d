"""LoraDirectory: a miss before the listing is loaded refreshes it once; events apply by version."""
from __future__ import annotations

import pytest

from services.inference_router.lora_sync import LoraDirectory
from shared.bus.base import Delivery
from shared.contracts.errors import ServiceUnavailable
from shared.contracts.messages import LoraDeleted, LoraUpdated

LORA = {"id": "3fa85f64-5717-4562-b3fc-2c963f66afa6", "name": "funny", "supported_models": ["m"],
        "validations": []}


def listing_of(*entries):
    calls = []

    async def fetch():
        calls.append(1)
        return list(entries)
    return fetch, calls


def delivery(message) -> Delivery:
    return Delivery(event=message.to_event("test"), queue="q", routing_key="k", delivery_count=1)


async def test_a_miss_before_loading_reads_the_listing_once():
    fetch, calls = listing_of({"org_id": "org-a", "lora": LORA, "adapter": None, "version": 1})
    directory = LoraDirectory(fetch)
    assert (await directory.resolve("org-a", "funny")).id == LORA["id"]
    assert await directory.resolve("org-a", "other") is None
    assert len(calls) == 1 and directory.model.loaded


async def test_an_unreachable_registry_is_a_503_not_a_404():
    async def down():
        raise ConnectionError("refused")

    with pytest.raises(ServiceUnavailable):
        await LoraDirectory(down).resolve("org-a", "funny")


async def test_events_update_and_delete():
    fetch, _ = listing_of()
    directory = LoraDirectory(fetch)
    await directory.on_event(delivery(LoraUpdated(org_id="org-a", lora=LORA, version=2)))
    assert directory.model.find("org-a", "funny").version == 2
    await directory.on_event(delivery(LoraDeleted(org_id="org-a", lora=LORA, version=3)))
    assert directory.model.find("org-a", "funny") is None
