"""After a crash: a retried completion answers, orphaned blobs are swept, reference counts come back."""
from __future__ import annotations

import asyncio
import io
import os

import openai
import pytest

from services.file_ingest.handlers import files as files_handlers
from services.file_ingest.recovery import rebuild_refs, recover_completions, sweep_orphans
from shared.contracts.loras import InternalLoraEntry, Lora
from shared.contracts.messages import AdapterRef


async def _upload_with_parts(client, data: bytes, pieces: int = 2):
    upload = await client.uploads.create(bytes=len(data), filename="adapter.safetensors",
                                         mime_type="application/octet-stream", purpose="lora")
    size = -(-len(data) // pieces)
    parts = [await client.uploads.parts.create(upload.id, data=io.BytesIO(data[i:i + size]))
             for i in range(0, len(data), size)]
    return upload, [part.id for part in parts]


def _crash_once_in(svc, monkeypatch, method: str) -> None:
    """The next call of the upload repository's `method` dies as if the process had been killed there."""
    original = getattr(svc.ctx.uploads, method)

    async def crashing(*args, **kwargs):
        monkeypatch.setattr(svc.ctx.uploads, method, original)
        raise ConnectionResetError("killed")

    monkeypatch.setattr(svc.ctx.uploads, method, crashing)


async def test_completing_twice_answers_the_completed_upload_again(svc):
    client = svc.sdk()
    upload, part_ids = await _upload_with_parts(client, os.urandom(3000))
    first = await client.uploads.complete(upload.id, part_ids=part_ids)

    again = await client.uploads.complete(upload.id, part_ids=part_ids)

    assert again.status == "completed" and again.file.id == first.file.id
    assert [f.id for f in (await client.files.list()).data] == [first.file.id]


async def test_a_retry_finishes_a_completion_that_stopped_after_storing_its_file(svc, monkeypatch):
    client = svc.sdk()
    data = os.urandom(5000)
    upload, part_ids = await _upload_with_parts(client, data)
    _crash_once_in(svc, monkeypatch, "mark_completed")
    with pytest.raises(openai.InternalServerError):
        await client.uploads.complete(upload.id, part_ids=part_ids)

    done = await client.uploads.complete(upload.id, part_ids=part_ids)

    assert done.status == "completed"
    assert (await client.files.content(done.file.id)).content == data
    assert svc.stored_objects() == [f"objects/orgs/org-a/files/{done.file.id}"]  # the parts are gone now


async def test_an_upload_whose_parts_are_gone_is_a_409_not_a_500(svc):
    client = svc.sdk()
    upload, part_ids = await _upload_with_parts(client, os.urandom(2000))
    stored = await svc.ctx.uploads.get("org-a", upload.id)
    for part in stored.parts:
        await svc.ctx.blobs.delete(part.object_key)

    with pytest.raises(openai.ConflictError) as refused:
        await client.uploads.complete(upload.id, part_ids=part_ids)

    assert refused.value.body["code"] == "upload_parts_missing"


async def test_startup_finishes_stored_completions_and_releases_the_others(svc, monkeypatch):
    client = svc.sdk()
    stored_file, stored_parts = await _upload_with_parts(client, os.urandom(3000))
    _crash_once_in(svc, monkeypatch, "mark_completed")
    with pytest.raises(openai.InternalServerError):
        await client.uploads.complete(stored_file.id, part_ids=stored_parts)
    no_file, no_file_parts = await _upload_with_parts(client, os.urandom(3000))
    # a completion that died before its File was stored: the lease is held, nothing else happened
    await svc.ctx.uploads.claim_completion("org-a", no_file.id, svc.ctx.now(), svc.ctx.now() + 3600, "file-x")

    assert await recover_completions(svc.ctx) == 2

    assert (await svc.ctx.uploads.get("org-a", stored_file.id)).status == "completed"
    released = await svc.ctx.uploads.get("org-a", no_file.id)
    assert released.status == "pending" and released.completing_until is None
    assert (await client.uploads.complete(no_file.id, part_ids=no_file_parts)).status == "completed"


async def test_the_orphan_sweep_deletes_only_what_no_document_holds(svc):
    client = svc.sdk()
    kept_file = await client.files.create(file=("a.json", b"{}"), purpose="lora")
    pending, _ = await _upload_with_parts(client, os.urandom(2000))
    done, done_parts = await _upload_with_parts(client, os.urandom(2000))
    await client.uploads.complete(done.id, part_ids=done_parts)
    kept = set(svc.stored_objects())
    orphans = ["orgs/org-a/files/file-never-recorded", f"orgs/org-a/uploads/{pending.id}/parts/part_never_added",
               f"orgs/org-a/uploads/{done.id}/parts/{done_parts[0]}", f"orgs/org-b/uploads/{done.id}/assembly/x",
               "orgs/org-b/uploads/upload_gone/parts/p1"]
    for key in [*orphans, "elsewhere/not-file-ingests"]:
        await svc.ctx.blobs.put_stream(key, _one(b"left over"))

    assert await sweep_orphans(svc.ctx, svc.ctx.blobs) == len(orphans)

    assert set(svc.stored_objects()) == kept | {"objects/elsewhere/not-file-ingests"}
    assert (await client.files.content(kept_file.id)).content == b"{}"


async def _one(data: bytes):
    yield data


def _entry(org: str, lora_id: str, config_id: str, weights_id: str) -> InternalLoraEntry:
    adapter = AdapterRef(lora_id=lora_id, name="pirate", config_file_id=config_id, weights_file_id=weights_id,
                         config_object_key=f"orgs/{org}/files/{config_id}",
                         weights_object_key=f"orgs/{org}/files/{weights_id}")
    lora = Lora(id=lora_id, name="pirate", supported_models=["m"], config_file_id=config_id,
                weights_file_id=weights_id, status="ready", validations=[], created_at=1, updated_at=1)
    return InternalLoraEntry(org_id=org, lora=lora, adapter=adapter, version=1)


async def _listing(*entries: InternalLoraEntry):
    for entry in entries:
        yield entry


async def test_rebuilt_references_keep_a_file_in_use_and_free_one_of_a_deleted_lora(svc):
    client = svc.sdk()
    config = await client.files.create(file=("adapter_config.json", b"{}"), purpose="lora")
    weights = await client.files.create(file=("adapter_model.safetensors", b"w"), purpose="lora")
    freed = await client.files.create(file=("old.safetensors", b"o"), purpose="lora")
    # the lora.created of the live LoRA was lost; the lora.deleted of the other one too
    await svc.ctx.refs.collection.insert_one({"_id": "lora-deleted", "org_id": "org-a", "file_ids": [freed.id],
                                              "released": False, "events_folded": 1})

    rebuilt = await rebuild_refs(svc.ctx, _listing(_entry("org-a", "lora-live", config.id, weights.id)))

    assert (rebuilt.added, rebuilt.released) == (1, 1)
    with pytest.raises(openai.ConflictError) as in_use:
        await client.files.delete(weights.id)
    assert in_use.value.body["code"] == "file_in_use"
    assert (await client.files.delete(freed.id)).deleted is True


async def test_a_delete_waits_for_the_rebuild_and_then_answers_503(svc, monkeypatch):
    client = svc.sdk()
    created = await client.files.create(file=("a.json", b"{}"), purpose="lora")
    svc.ctx.refs_rebuilt = asyncio.Event()
    monkeypatch.setattr(files_handlers, "REFS_WAIT_SECONDS", 0.05)

    with pytest.raises(openai.InternalServerError) as unavailable:
        await client.files.delete(created.id)

    assert unavailable.value.status_code == 503 and unavailable.value.body["code"] == "file_refs_rebuilding"
