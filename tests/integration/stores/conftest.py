"""Fixtures for the store suites: every blob case runs on both stores, every document case
on the embedded store and, when LORASERVE_MONGO_URL is set, on MongoDB too."""
from __future__ import annotations

import os
import uuid
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest

from shared.stores.blobs import BlobStore
from shared.stores.documents import DocumentStore
from shared.stores.local_blobs import LocalBlobStore
from shared.stores.minio_blobs import MinioBlobStore
from tests.fixtures.s3 import S3_ACCESS_KEY, S3_REGION, S3_SECRET_KEY


@dataclass
class BlobCase:
    store: BlobStore
    # what an aborted write could leave behind that is not an object: temp files, multipart uploads
    leftovers: Callable[[], Awaitable[list[str]]]


def _s3_admin(endpoint: str):
    return boto3.client("s3", endpoint_url=f"http://{endpoint}", region_name=S3_REGION,
                        aws_access_key_id=S3_ACCESS_KEY, aws_secret_access_key=S3_SECRET_KEY)


def _empty_bucket(admin, bucket: str) -> None:
    for upload in admin.list_multipart_uploads(Bucket=bucket).get("Uploads", []):
        admin.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
    for page in admin.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for item in page.get("Contents", []):
            admin.delete_object(Bucket=bucket, Key=item["Key"])
    admin.delete_bucket(Bucket=bucket)


@asynccontextmanager
async def _local_case(tmp_path: Path):
    store = LocalBlobStore(tmp_path / "blobs")
    await store.start()

    async def leftovers() -> list[str]:
        return sorted(path.name for path in (tmp_path / "blobs" / "incoming").iterdir())

    yield BlobCase(store, leftovers)


@asynccontextmanager
async def _minio_case(endpoint: str):
    bucket = f"stores-{uuid.uuid4().hex[:12]}"
    store = MinioBlobStore(endpoint, S3_ACCESS_KEY, S3_SECRET_KEY, bucket, region=S3_REGION)
    await store.start()
    admin = _s3_admin(endpoint)

    async def leftovers() -> list[str]:
        uploads = admin.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
        return sorted(f"{upload['Key']} (multipart {upload['UploadId']})" for upload in uploads)

    try:
        yield BlobCase(store, leftovers)
    finally:
        await store.close()
        _empty_bucket(admin, bucket)  # moto holds objects in memory


@pytest.fixture(params=["local", "minio"])
async def blob_case(request, tmp_path):
    if request.param == "local":
        case = _local_case(tmp_path)
    else:
        case = _minio_case(request.getfixturevalue("s3_server_process"))
    async with case as blob_case:
        yield blob_case


def _document_backends() -> list[str]:
    # the embedded store always; MongoDB as well wherever one is configured
    return ["embedded", "mongo"] if os.environ.get("LORASERVE_MONGO_URL") else ["embedded"]


@pytest.fixture(params=_document_backends())
async def document_store(request, tmp_path):
    """A DocumentStore and a database name that is this test's alone."""
    if request.param == "embedded":
        store = DocumentStore(data_dir=tmp_path)
    else:
        store = DocumentStore(mongo_url=os.environ["LORASERVE_MONGO_URL"])
    database = f"stores_test_{uuid.uuid4().hex[:10]}"
    yield store, database
    if not store.embedded:
        await store.database(database).client.drop_database(database)
    await store.close()
