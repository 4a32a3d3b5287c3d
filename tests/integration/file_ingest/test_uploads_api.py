"""The Uploads API with the SDK's own `upload_file_chunked`: small and large parts, checks, cancel, expiry."""
from __future__ import annotations

import hashlib
import os

import openai
import pytest

from services.file_ingest.sweeper import sweep_expired
from tests.integration.file_ingest.conftest import MiB


def write(tmp_path, size: int):
    path = tmp_path / "adapter_model.safetensors"
    path.write_bytes(os.urandom(size))
    return path, path.read_bytes()


async def chunked(client, path, part_size: int, **kw):
    return await client.uploads.upload_file_chunked(file=path, mime_type="application/octet-stream",
                                                    purpose="lora", part_size=part_size, **kw)


@pytest.mark.parametrize(("size", "part_size"), [
    (12 * MiB + 345, 1 * MiB),  # parts below S3's 5 MiB minimum: coalesced before the compose
    (13 * MiB + 7, 6 * MiB),  # parts above it: composed as they are
    (3 * MiB, 1 * MiB),  # all of it smaller than one compose source
])
async def test_chunked_upload_round_trips_byte_for_byte(svc, tmp_path, size, part_size):
    path, data = write(tmp_path, size)
    client = svc.sdk()
    upload = await chunked(client, path, part_size, md5=hashlib.md5(data).hexdigest())
    assert upload.status == "completed" and upload.object == "upload" and upload.id.startswith("upload_")
    assert upload.file is not None and upload.file.bytes == size and upload.file.purpose == "lora"
    assert upload.file.filename == "adapter_model.safetensors"
    content = await client.files.content(upload.file.id)
    assert hashlib.sha256(content.content).hexdigest() == hashlib.sha256(data).hexdigest()
    assert [f.id for f in (await client.files.list()).data] == [upload.file.id]
    # the parts and the intermediate objects are gone: only the file remains
    assert svc.stored_objects() == [f"objects/orgs/org-a/files/{upload.file.id}"]


async def test_a_wrong_md5_is_a_400_and_the_upload_can_be_completed_again(svc, tmp_path):
    path, data = write(tmp_path, 2 * MiB)
    client = svc.sdk()
    with pytest.raises(openai.BadRequestError) as wrong:
        await chunked(client, path, MiB, md5="0" * 32)
    assert wrong.value.body["param"] == "md5" and wrong.value.body["code"] == "md5_mismatch"
    assert (await client.files.list()).data == []

    upload = (await svc.ctx.uploads.collection.find_one({"org_id": "org-a"}))
    part_ids = [part["id"] for part in upload["parts"]]
    done = await client.uploads.complete(upload["_id"], part_ids=part_ids, md5=hashlib.md5(data).hexdigest())
    assert done.status == "completed" and done.file.bytes == len(data)


async def test_declared_bytes_must_match_the_parts(svc, tmp_path):
    path, data = write(tmp_path, 2 * MiB)
    client = svc.sdk()
    with pytest.raises(openai.BadRequestError) as short:
        await chunked(client, path, MiB, bytes=len(data) + 1)
    assert "bytes=" in short.value.message and short.value.body["param"] == "part_ids"
    with pytest.raises(openai.BadRequestError) as over:
        await chunked(client, path, MiB, bytes=len(data) - 1)
    assert over.value.body["code"] == "upload_bytes_exceeded"
    assert (await client.files.list()).data == []


async def new_upload(client, size: int = 2 * MiB):
    return await client.uploads.create(bytes=size, filename="w.bin", mime_type="application/octet-stream",
                                       purpose="lora")


async def test_part_ids_of_another_upload_and_repeats_are_refused_all_at_once(svc):
    client = svc.sdk()
    mine, other = await new_upload(client), await new_upload(client)
    part = await client.uploads.parts.create(upload_id=mine.id, data=os.urandom(MiB))
    foreign = await client.uploads.parts.create(upload_id=other.id, data=os.urandom(MiB))
    assert part.object == "upload.part" and part.upload_id == mine.id and part.id.startswith("part_")
    with pytest.raises(openai.BadRequestError) as refused:
        await client.uploads.complete(mine.id, part_ids=[part.id, foreign.id, part.id])
    assert foreign.id in refused.value.message and "more than once" in refused.value.message


async def test_a_cancelled_upload_takes_no_more_parts_and_its_parts_are_deleted(svc):
    client = svc.sdk()
    upload = await new_upload(client)
    part = await client.uploads.parts.create(upload_id=upload.id, data=os.urandom(MiB))
    cancelled = await client.uploads.cancel(upload.id)
    assert cancelled.status == "cancelled"
    assert svc.stored_objects() == []
    with pytest.raises(openai.ConflictError):
        await client.uploads.parts.create(upload_id=upload.id, data=b"more")
    with pytest.raises(openai.ConflictError):
        await client.uploads.complete(upload.id, part_ids=[part.id])
    with pytest.raises(openai.ConflictError):
        await client.uploads.cancel(upload.id)


async def test_expired_uploads_are_swept_and_their_parts_deleted(svc):
    client = svc.sdk()
    upload = await new_upload(client)
    part = await client.uploads.parts.create(upload_id=upload.id, data=os.urandom(MiB))
    assert upload.expires_at - upload.created_at == svc.platform.settings.upload_ttl_seconds
    assert await sweep_expired(svc.ctx) == 0 and svc.stored_objects() != []

    svc.clock.skipped = svc.platform.settings.upload_ttl_seconds + 1
    with pytest.raises(openai.ConflictError) as late:
        await client.uploads.complete(upload.id, part_ids=[part.id])
    assert "expired" in late.value.message
    assert await sweep_expired(svc.ctx) == 1
    assert svc.stored_objects() == []
    assert (await svc.ctx.uploads.get("org-a", upload.id)).status == "expired"


@pytest.mark.parametrize(("body", "param"), [
    ({"bytes": 10, "filename": "a.bin", "mime_type": "x/y", "purpose": "nope"}, "purpose"),
    ({"bytes": 0, "filename": "a.bin", "mime_type": "x/y", "purpose": "lora"}, "bytes"),
    ({"bytes": 64 * MiB, "filename": "a.bin", "mime_type": "x/y", "purpose": "lora"}, "bytes"),
    ({"bytes": 10, "filename": "a\nb", "mime_type": "x/y", "purpose": "lora"}, "filename"),
    ({"bytes": 10, "filename": "a.bin", "purpose": "lora"}, "mime_type"),
])
async def test_bad_upload_bodies_get_a_400_naming_the_param(svc, body, param):
    resp = await svc.http.post("/v1/uploads", json=body, headers=svc.auth())
    assert resp.status == 400
    assert (await resp.json())["error"]["param"] == param


async def test_an_empty_or_missing_part_is_refused(svc):
    client = svc.sdk()
    upload = await new_upload(client)
    with pytest.raises(openai.BadRequestError) as empty:
        await client.uploads.parts.create(upload_id=upload.id, data=b"")
    assert empty.value.body["param"] == "data"
    assert svc.stored_objects() == []
