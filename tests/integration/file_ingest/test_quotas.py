"""Per-org quotas in file-ingest: files, stored bytes (with uploads' reservations) and pending uploads."""
from __future__ import annotations

import asyncio

import openai
import pytest

from services.file_ingest.recovery import recover_at_startup
from services.file_ingest.sweeper import sweep_expired
from shared.cli.main import main
from shared.quotas import OrgLimits
from tests.integration.file_ingest.conftest import MiB

GiB = 1024**3
TiB = 1024**4


async def cli(argv: list[str]) -> int:
    return await asyncio.to_thread(main, argv)  # the CLI runs its own event loop, as in a shell


def upload_body(declared: int, name: str = "adapter_model.safetensors") -> dict:
    return {"bytes": declared, "filename": name, "mime_type": "application/octet-stream", "purpose": "lora"}


async def create_upload(svc, declared: int, org: str = "org-a"):
    return await svc.http.post("/v1/uploads", json=upload_body(declared), headers=svc.auth(org))


async def post_file(svc, data: bytes, org: str = "org-a"):
    return await svc.sdk(org).files.create(file=("adapter_config.json", data), purpose="lora")


async def refusal(response) -> dict:
    assert response.status == 403, await response.text()
    assert response.headers["x-should-retry"] == "false"
    error = (await response.json())["error"]
    assert error["code"] == "quota_exceeded" and error["type"] == "quota_exceeded"
    return error


async def test_300_concurrent_100_gib_uploads_against_1_tib_exactly_10_pass(make_service):
    svc = await make_service(max_file_bytes=100 * GiB, quota_stored_bytes=TiB, quota_pending_uploads=1000,
                             quota_files=1000)
    responses = await asyncio.gather(*(create_upload(svc, 100 * GiB) for _ in range(300)))
    statuses = [r.status for r in responses]
    assert statuses.count(200) == 10 and statuses.count(403) == 290
    error = await refusal(next(r for r in responses if r.status == 403))
    assert error["param"] == "stored_bytes"
    assert f"stored bytes: {1000 * GiB} of {TiB} used" in error["message"]
    assert await svc.ctx.uploads.collection.count_documents({"org_id": "org-a"}) == 10

    # the other org's room is untouched, and a cancel gives the bytes back
    assert (await create_upload(svc, 100 * GiB, org="org-b")).status == 200
    first = await next(r for r in responses if r.status == 200).json()
    cancelled = await svc.http.post(f"/v1/uploads/{first['id']}/cancel", headers=svc.auth())
    assert cancelled.status == 200
    assert (await create_upload(svc, 100 * GiB)).status == 200
    assert (await create_upload(svc, 100 * GiB)).status == 403


async def test_pending_uploads_quota_and_expiry_releases_it(make_service):
    svc = await make_service(quota_pending_uploads=2)
    assert [(await create_upload(svc, MiB)).status for _ in range(2)] == [200, 200]
    error = await refusal(await create_upload(svc, MiB))
    assert error["param"] == "pending_uploads" and "pending uploads: 2 of 2 used" in error["message"]
    assert (await create_upload(svc, MiB, org="org-b")).status == 200

    svc.clock.skipped = svc.platform.settings.upload_ttl_seconds + 1
    assert await sweep_expired(svc.ctx) == 3
    assert (await create_upload(svc, MiB)).status == 200


async def test_files_quota_on_post_files_and_a_delete_frees_it(make_service):
    svc = await make_service(quota_files=2)
    first = await post_file(svc, b'{"r": 8}')
    await post_file(svc, b'{"r": 16}')
    with pytest.raises(openai.PermissionDeniedError) as refused:
        await post_file(svc, b'{"r": 32}')
    assert refused.value.body["code"] == "quota_exceeded" and refused.value.body["param"] == "files"
    assert "files: 2 of 2 used" in refused.value.body["message"]
    assert len(svc.stored_objects()) == 2  # the refused file's bytes were not kept
    await post_file(svc, b"{}", org="org-b")

    await svc.sdk().files.delete(first.id)
    await post_file(svc, b'{"r": 32}')


async def test_stored_bytes_quota_counts_files_and_reserved_uploads(make_service):
    svc = await make_service(quota_stored_bytes=100)
    await post_file(svc, b"x" * 60)
    with pytest.raises(openai.PermissionDeniedError) as refused:
        await post_file(svc, b"y" * 50)
    body = refused.value.body
    assert body["param"] == "stored_bytes" and "stored bytes: 60 of 100 used; this request needs 50 more" \
        in body["message"]
    error = await refusal(await create_upload(svc, 41))
    assert error["param"] == "stored_bytes"
    assert (await create_upload(svc, 40)).status == 200
    with pytest.raises(openai.PermissionDeniedError):  # full: refused before the body is read
        await post_file(svc, b"z")


async def test_a_completed_upload_turns_its_reservation_into_a_stored_file(make_service, tmp_path):
    svc = await make_service(quota_pending_uploads=1, quota_files=5)
    path = tmp_path / "adapter_model.safetensors"
    path.write_bytes(b"w" * (2 * MiB))
    upload = await svc.sdk().uploads.upload_file_chunked(file=path, mime_type="application/octet-stream",
                                                         purpose="lora", part_size=MiB)
    assert upload.status == "completed"
    usage = await svc.ctx.usage.usage("org-a")
    assert usage["files"] == 1 and usage["stored_bytes"] == 2 * MiB
    assert usage["pending_uploads"] == 0 and usage["reserved_bytes"] == 0 and usage["bytes_total"] == 2 * MiB
    assert (await create_upload(svc, MiB)).status == 200  # the pending slot is free again


async def test_the_embedded_start_up_recounts_drifted_counters(make_service):
    svc = await make_service()
    await post_file(svc, b"a" * 10)
    assert (await create_upload(svc, 30)).status == 200
    await svc.ctx.usage.collection.update_one({"_id": "org-a"}, {"$inc": {"files_total": 7, "bytes_total": 99}})
    await svc.ctx.usage.collection.insert_one({"_id": "org-gone", "files": 3})
    await recover_at_startup(svc.ctx, svc.platform.blobs)
    assert await svc.ctx.usage.usage("org-a") == {"files": 1, "stored_bytes": 10, "pending_uploads": 1,
                                                  "reserved_bytes": 30, "files_total": 2, "bytes_total": 40}
    assert await svc.ctx.usage.collection.find_one({"_id": "org-gone"}) is None


async def test_overrides_from_the_cli_apply_to_the_running_service(make_service, monkeypatch, capsys):
    svc = await make_service(quota_pending_uploads=50)
    monkeypatch.setenv("LORASERVE_KEYS_FILE", str(svc.platform.settings.keys_path))
    monkeypatch.setenv("LORASERVE_QUOTA_PENDING_UPLOADS", "50")  # the CLI shows the defaults it is run with
    assert await cli(["admin", "orgs", "set-limits", "org-a", "--pending-uploads", "1", "--files", "7"]) == 0
    assert (await create_upload(svc, MiB)).status == 200
    error = await refusal(await create_upload(svc, MiB))
    assert "pending uploads: 1 of 1 used" in error["message"]
    assert (await create_upload(svc, MiB, org="org-b")).status == 200

    assert await cli(["admin", "orgs", "set-limits", "org-a", "--pending-uploads", "default"]) == 0
    assert (await create_upload(svc, MiB)).status == 200
    assert await svc.platform.identity.get_limits("org-a") == OrgLimits(files=7)
    capsys.readouterr()
    assert await cli(["admin", "orgs", "show", "org-a"]) == 0
    shown = capsys.readouterr().out
    assert "files\t7\t(override)" in shown and "pending_uploads\t50\t(default)" in shown
