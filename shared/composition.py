"""The composition root: builds the Platform for a run mode and the apps each command serves.

Which adapter is used follows the settings: an AMQP URL means RabbitMQ (else the
in-process bus), a Mongo URL means MongoDB (else mongomock persisted under the data
dir), an S3 endpoint means MinIO (else a local directory).
"""
from __future__ import annotations

import importlib

from aiohttp import web

from shared.catalogue.catalogue import load_catalogue
from shared.http.app import create_app
from shared.identity.store import FileIdentityStore, IdentityStore, MongoIdentityStore
from shared.platform import Platform, ServicePart
from shared.ratelimit import leases_for
from shared.settings import Settings

# service name -> module exposing build(platform) -> ServicePart
SERVICES = {
    "file-ingest": "services.file_ingest.app",
    "registry": "services.registry.app",
    "validator": "services.validator.app",
    "inference-router": "services.inference_router.app",
    "gpu-worker": "services.gpu_worker.app",
    "webhooks": "services.webhooks.app",
}
HTTP_SERVICES = ("file-ingest", "registry", "validator", "inference-router", "webhooks")


def make_identity(settings: Settings, documents) -> IdentityStore:
    if settings.identity_backend == "mongo":
        return MongoIdentityStore(documents.database("identity"), pepper=settings.key_pepper)
    return FileIdentityStore(settings.keys_path, pepper=settings.key_pepper)


def build_platform(settings: Settings, source: str) -> Platform:
    from shared.bus import make_bus
    from shared.stores import make_blob_store, make_document_store

    catalogue = load_catalogue(settings.catalogue_file)
    documents = make_document_store(settings)
    return Platform(
        settings=settings,
        bus=make_bus(settings, catalogue.slugs()),
        documents=documents,
        blobs=make_blob_store(settings),
        identity=make_identity(settings, documents),
        catalogue=catalogue,
        source=source,
        leases=leases_for(settings.redis_url, settings.redis_password),
    )


def build_part(name: str, platform: Platform) -> ServicePart:
    module = importlib.import_module(SERVICES[name])
    return module.build(platform)


def available_services() -> list[str]:
    """Services whose package is present (the embedded default runs all of them)."""
    found = []
    for name, module in SERVICES.items():
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.startswith("services."):
                continue
            raise
        found.append(name)
    return found


async def recover_embedded(platform: Platform, services: list[str]) -> None:
    """Undo what a crash of the embedded platform left behind, from the stored documents, before serving:
    half-done upload completions and orphaned blobs (one process owns the data dir, and nothing is in
    flight yet), validation jobs and background responses that were queued in the in-memory bus."""
    from shared.stores.local_blobs import LocalBlobStore

    if "file-ingest" in services and platform.documents.embedded and isinstance(platform.blobs, LocalBlobStore):
        from services.file_ingest.context import FileIngest
        from services.file_ingest.recovery import recover_at_startup

        await recover_at_startup(FileIngest.from_platform(platform), platform.blobs)
    if platform.settings.amqp_url:
        return  # RabbitMQ kept the queued work
    if "registry" in services:
        from services.registry.app import registry_from
        from services.registry.recovery import reissue_validations

        await reissue_validations(registry_from(platform))
    if "inference-router" in services:
        from services.inference_router.app import router_from
        from services.inference_router.recovery import fail_interrupted

        await fail_interrupted(router_from(platform).responses)


def recovery_part(platform: Platform, services: list[str]) -> ServicePart:
    """Runs last at start-up: after every service made its indexes and bound its consumers."""
    async def recovery_ctx(app: web.Application):
        await recover_embedded(platform, services)
        yield

    return ServicePart(name="recovery", cleanup_ctx=[recovery_ctx])


def leases_part(platform: Platform) -> ServicePart:
    """Runs first, so it closes the platform's leases after every service that holds them stopped."""
    async def leases_ctx(app: web.Application):
        yield
        await platform.leases.close()

    return ServicePart(name="leases", cleanup_ctx=[leases_ctx])


def embedded_app(settings: Settings) -> web.Application:
    platform = build_platform(settings, source="loraserve/dev")
    services = available_services()
    parts = [build_part(name, platform) for name in services]
    return create_app(platform, [leases_part(platform), *parts, recovery_part(platform, services)])


def service_app(settings: Settings, service: str) -> web.Application:
    platform = build_platform(settings, source=f"loraserve/{service}")
    return create_app(platform, [leases_part(platform), build_part(service, platform)])
