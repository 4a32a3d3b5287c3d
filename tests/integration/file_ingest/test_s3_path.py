"""The same blob path against an S3 server (moto): streamed puts, coalesced small parts, server-side compose."""
from __future__ import annotations

import hashlib
import os
import uuid

import boto3
import pytest

from tests.fixtures.s3 import S3_ACCESS_KEY, S3_REGION, S3_SECRET_KEY
from tests.integration.file_ingest.conftest import MiB


@pytest.fixture
async def s3_svc(make_service, s3_server):
    bucket = f"file-ingest-{uuid.uuid4().hex[:12]}"
    svc = await make_service(s3_endpoint=s3_server, s3_access_key=S3_ACCESS_KEY, s3_secret_key=S3_SECRET_KEY,
                             s3_region=S3_REGION, s3_bucket=bucket)
    admin = boto3.client("s3", endpoint_url=f"http://{s3_server}", region_name=S3_REGION,
                         aws_access_key_id=S3_ACCESS_KEY, aws_secret_access_key=S3_SECRET_KEY)
    return svc, admin, bucket


def bucket_state(admin, bucket: str) -> tuple[list[str], list[str]]:
    keys = [item["Key"] for item in admin.list_objects_v2(Bucket=bucket).get("Contents", [])]
    uploads = [u["Key"] for u in admin.list_multipart_uploads(Bucket=bucket).get("Uploads", [])]
    return sorted(keys), uploads


async def test_files_and_chunked_uploads_round_trip_through_s3(s3_svc, tmp_path):
    svc, admin, bucket = s3_svc
    client = svc.sdk()
    direct = os.urandom(MiB + 3)
    file = await client.files.create(file=("adapter_config.json", direct), purpose="lora")
    assert (await client.files.content(file.id)).content == direct

    path = tmp_path / "adapter_model.safetensors"
    path.write_bytes(os.urandom(11 * MiB + 5))
    data = path.read_bytes()
    upload = await client.uploads.upload_file_chunked(file=path, mime_type="application/octet-stream",
                                                      purpose="lora", part_size=MiB,
                                                      md5=hashlib.md5(data).hexdigest())
    assert upload.status == "completed" and upload.file.bytes == len(data)
    content = await client.files.content(upload.file.id)
    assert hashlib.sha256(content.content).hexdigest() == hashlib.sha256(data).hexdigest()
    ranged = await svc.http.get(f"/v1/files/{upload.file.id}/content",
                                headers={**svc.auth(), "Range": f"bytes={6 * MiB}-{6 * MiB + 99}"})
    assert ranged.status == 206 and await ranged.read() == data[6 * MiB:6 * MiB + 100]

    # only the two files are left: no parts, no intermediate objects, no open multipart uploads
    assert bucket_state(admin, bucket) == (
        sorted([f"orgs/org-a/files/{file.id}", f"orgs/org-a/files/{upload.file.id}"]), [])
    await client.files.delete(file.id)
    assert bucket_state(admin, bucket) == ([f"orgs/org-a/files/{upload.file.id}"], [])
