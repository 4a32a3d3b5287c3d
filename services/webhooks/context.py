"""What the webhooks service's handlers and workers share, built once per app."""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from services.webhooks.egress import Egress, Resolver
from services.webhooks.repository import EndpointRepository
from services.webhooks.secrets import SecretBox
from shared.bus.base import Bus
from shared.platform import Platform
from shared.quotas import Quotas
from shared.settings import Settings

DATABASE = "webhooks"


@dataclass
class Webhooks:
    settings: Settings
    bus: Bus
    source: str
    repository: EndpointRepository
    egress: Egress
    quotas: Quotas
    database: object  # the service's own database (D's delivery collections live in it too)
    clock: Callable[[], float] = field(default=time.time)

    @classmethod
    def from_platform(cls, platform: Platform, resolver: Resolver | None = None) -> Webhooks:
        database = platform.documents.database(DATABASE)
        box = SecretBox.from_settings(platform.settings)
        return cls(settings=platform.settings, bus=platform.bus, source=platform.source,
                   repository=EndpointRepository(database, box),
                   egress=Egress(platform.settings, resolver or platform.extras.get("webhook_resolver")),
                   quotas=Quotas(platform.settings, platform.identity), database=database)

    def now(self) -> float:
        return self.clock()
