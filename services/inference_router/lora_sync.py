"""Keeps the LoRA read model current: the registry's listing at start-up, then lora.* events.

The event subscription starts before the listing is read, and versions decide between
them, so nothing that changes in between is lost. Until the listing has been applied once,
a lookup miss refreshes it (one refresh at a time) rather than answering "not found" wrongly.
"""
from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from services.inference_router.loras import LoraReadModel, LoraView, view_from
from shared.bus.base import Delivery
from shared.clients.registry import RegistryClient
from shared.contracts.errors import ServiceUnavailable
from shared.contracts.messages import LoraCreated, LoraDeleted, LoraUpdated, LoraValidationFinished
from shared.logging import get_logger

log = get_logger("inference_router.loras")
FetchListing = Callable[[], Awaitable[list[dict[str, Any]]]]
LORA_EVENT_BINDING = "org.*.lora.#"
UPSERTS = {m.TYPE: m for m in (LoraCreated, LoraUpdated, LoraValidationFinished)}
FIRST_BACKOFF_SECONDS = 0.2
MAX_BACKOFF_SECONDS = 30.0


class LoraDirectory:
    def __init__(self, fetch_listing: FetchListing):
        self.fetch_listing = fetch_listing
        self.model = LoraReadModel()
        self._refresh_lock = asyncio.Lock()

    def apply_listing(self, entries: list[dict[str, Any]]) -> None:
        for entry in entries:
            self.model.upsert(view_from(entry["org_id"], entry["lora"], entry.get("adapter"),
                                        int(entry.get("version", 0))))
        self.model.loaded = True

    async def refresh(self) -> None:
        """Read the whole listing once (at most one read in flight)."""
        async with self._refresh_lock:
            if not self.model.loaded:
                self.apply_listing(await self.fetch_listing())

    async def load_with_backoff(self) -> None:
        """The start-up load: retried until the registry answers (in the embedded app it starts with us)."""
        delay = FIRST_BACKOFF_SECONDS
        while not self.model.loaded:
            try:
                await self.refresh()
                log.info("lora read model loaded", loras=len(self.model.by_id))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 -- whatever the registry's trouble, retry it later
                log.warning("lora listing not available yet", error=str(exc), retry_in=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_BACKOFF_SECONDS)

    async def resolve(self, org_id: str, ref: str) -> LoraView | None:
        view = self.model.find(org_id, ref)
        if view is None and not self.model.loaded:
            try:
                await self.refresh()
            except Exception as exc:
                raise ServiceUnavailable("The LoRA registry is not reachable yet; retry in a few seconds.",
                                         code="registry_unavailable") from exc
            view = self.model.find(org_id, ref)
        return view

    async def on_event(self, delivery: Delivery) -> None:
        """Bus handler for `org.*.lora.#` events."""
        event = delivery.event
        if event.type == LoraDeleted.TYPE:
            deleted = LoraDeleted.from_event(event)
            self.model.delete(str(deleted.lora.get("id")), deleted.version)
        elif event.type in UPSERTS:
            changed = UPSERTS[event.type].from_event(event)
            self.model.upsert(view_from(changed.org_id, changed.lora, changed.adapter, changed.version))


def registry_listing(client: RegistryClient) -> FetchListing:
    """GET {registry}/internal/v1/loras, every page, across all orgs."""
    async def fetch() -> list[dict[str, Any]]:
        return [entry.model_dump(mode="json") async for entry in client.list_all()]
    return fetch
