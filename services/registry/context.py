"""What the registry's handlers and consumers work with, built once per app."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from services.registry.repository import LoraRepository
from shared.quotas import Quotas

if TYPE_CHECKING:
    from services.registry.events_hub import EventsHub
    from shared.bus.base import Bus
    from shared.catalogue.catalogue import Catalogue
    from shared.clients.files import FileIngestClient


@dataclass
class Registry:
    repository: LoraRepository
    bus: Bus
    catalogue: Catalogue
    source: str
    validation_deadline_seconds: int
    quotas: Quotas
    files: FileIngestClient | None = None  # set by the HTTP client's cleanup_ctx
    hub: EventsHub | None = None  # set by the events subscription's cleanup_ctx

