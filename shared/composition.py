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
from shared.settings import Settings

# service name -> module exposing build(platform) -> ServicePart
SERVICES = {
    "file-ingest": "services.file_ingest.app",
    "registry": "services.registry.app",
    "validator": "services.validator.app",
    "inference-router": "services.inference_router.app",
    "gpu-worker": "services.gpu_worker.app",
}
HTTP_SERVICES = ("file-ingest", "registry", "validator", "inference-router")


def make_identity(settings: Settings, documents) -> IdentityStore:
    if settings.identity_backend == "mongo":
        return MongoIdentityStore(documents.database("identity"))
    return FileIdentityStore(settings.keys_path)


def build_platform(settings: Settings, source: str) -> Platform:
    from shared.bus import make_bus
    from shared.stores import make_blob_store, make_document_store

    catalogue = load_catalogue()
    documents = make_document_store(settings)
    return Platform(
        settings=settings,
        bus=make_bus(settings, catalogue.slugs()),
        documents=documents,
        blobs=make_blob_store(settings),
        identity=make_identity(settings, documents),
        catalogue=catalogue,
        source=source,
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


def embedded_app(settings: Settings) -> web.Application:
    platform = build_platform(settings, source="loraserve/dev")
    parts = [build_part(name, platform) for name in available_services()]
    return create_app(platform, parts)


def service_app(settings: Settings, service: str) -> web.Application:
    platform = build_platform(settings, source=f"loraserve/{service}")
    return create_app(platform, [build_part(service, platform)])
