"""What every service is built from (`Platform`) and what each contributes to an app (`ServicePart`).

One composition root per run mode (`shared.composition`) makes the Platform:
embedded adapters for `loraserve dev`, RabbitMQ/MongoDB/MinIO for `loraserve serve`.
Each service package exposes `build(platform) -> ServicePart`; the HTTP kit
(`shared.http.app.create_app`) turns a list of parts into one aiohttp app.
"""
from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web

from shared.ratelimit.leases import InProcessLeases, Leases

if TYPE_CHECKING:
    from shared.bus.base import Bus
    from shared.catalogue.catalogue import Catalogue
    from shared.identity.store import IdentityStore
    from shared.settings import Settings
    from shared.stores.blobs import BlobStore
    from shared.stores.documents import DocumentStore

CleanupCtx = Callable[[web.Application], AsyncIterator[None]]
ReadinessCheck = Callable[[], Awaitable[bool]]


@dataclass
class Platform:
    settings: Settings
    bus: Bus
    documents: DocumentStore
    blobs: BlobStore
    identity: IdentityStore
    catalogue: Catalogue
    source: str = "loraserve"  # CloudEvents `source` of what this process publishes
    extras: dict[str, Any] = field(default_factory=dict)
    # concurrency leases (streams, uploads) every service of this process shares: in Redis when it is set
    leases: Leases = field(default_factory=InProcessLeases)

    def internal_url(self, service: str) -> str:
        """Base URL of another service's internal API (itself, in the embedded default)."""
        configured = {"file-ingest": self.settings.file_ingest_url, "registry": self.settings.registry_url}
        return (configured.get(service) or f"http://{self.settings.host}:{self.settings.port}").rstrip("/")


@dataclass
class ServicePart:
    name: str
    routes: list[web.AbstractRouteDef] = field(default_factory=list)
    # started in order after the platform (bus consumers, sweepers, clients); stopped in reverse
    cleanup_ctx: list[CleanupCtx] = field(default_factory=list)
    readiness: list[ReadinessCheck] = field(default_factory=list)
    # run when the server starts shutting down, before it waits for open requests (end long-lived streams)
    on_shutdown: list[Callable[[web.Application], Awaitable[None]]] = field(default_factory=list)
