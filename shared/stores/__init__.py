"""Document and blob stores, each with a production and an embedded implementation.

The factories pick by settings: MongoDB / MinIO when their URL or endpoint is set,
otherwise the embedded default under `settings.data_dir`. Imports happen inside them
so that importing `shared.stores` pulls in neither motor nor minio.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from shared.settings import Settings
    from shared.stores.blobs import BlobStore
    from shared.stores.documents import DocumentStore


def make_document_store(settings: Settings) -> DocumentStore:
    from shared.stores.documents import DocumentStore

    return DocumentStore.from_settings(settings)


def make_blob_store(settings: Settings) -> BlobStore:
    """The blob store for these settings; call `await store.start()` before use."""
    if settings.s3_endpoint:
        from shared.stores.minio_blobs import MinioBlobStore

        return MinioBlobStore.from_settings(settings)
    from shared.stores.local_blobs import LocalBlobStore

    return LocalBlobStore(settings.data_dir / "blobs")
