"""POST/GET/DELETE /v1/files with the official openai SDK, and the bad inputs a client may send."""
from __future__ import annotations

import hashlib
import os

import openai
import pytest
from aiohttp import FormData

from tests.integration.file_ingest.conftest import MiB


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def test_create_list_retrieve_content_delete_round_trip(svc):
    client = svc.sdk()
    data = os.urandom(3 * MiB + 17)
    created = await client.files.create(file=("adapter_model.safetensors", data), purpose="lora")
    assert created.id.startswith("file-") and created.object == "file"
    assert (created.bytes, created.filename, created.purpose, created.status) == (
        len(data), "adapter_model.safetensors", "lora", "processed")

    listed = await client.files.list()
    assert [f.id for f in listed.data] == [created.id]
    assert (await client.files.retrieve(created.id)) == created
    content = await client.files.content(created.id)
    assert sha(content.content) == sha(data)

    deleted = await client.files.delete(created.id)
    assert (deleted.id, deleted.deleted) == (created.id, True)
    with pytest.raises(openai.NotFoundError):
        await client.files.retrieve(created.id)
    assert svc.stored_objects() == []


async def test_list_pages_by_cursor_in_both_orders_and_filters_by_purpose(svc):
    client = svc.sdk()
    ids = []
    for i, purpose in enumerate(["lora", "lora", "user_data", "lora"]):
        ids.append((await client.files.create(file=(f"f{i}.bin", b"x" * (i + 1)), purpose=purpose)).id)

    first = await client.files.list(limit=2)
    assert [f.id for f in first.data] == [ids[3], ids[2]] and first.has_more
    rest = await client.files.list(limit=2, after=first.last_id)
    assert [f.id for f in rest.data] == [ids[1], ids[0]] and not rest.has_more

    oldest_first = [f.id async for f in client.files.list(limit=1, order="asc")]  # the SDK follows the cursor
    assert oldest_first == ids
    loras = await client.files.list(purpose="lora")
    assert [f.id for f in loras.data] == [ids[3], ids[1], ids[0]]


@pytest.mark.parametrize(("header", "status", "expected", "content_range"), [
    ("bytes=10-19", 206, slice(10, 20), "bytes 10-19/100"),
    ("bytes=90-", 206, slice(90, 100), "bytes 90-99/100"),
    ("bytes=-5", 206, slice(95, 100), "bytes 95-99/100"),
    ("bytes=95-500", 206, slice(95, 100), "bytes 95-99/100"),
    ("bytes=0-1,5-6", 200, slice(0, 100), None),
])
async def test_content_honours_a_range(svc, header, status, expected, content_range):
    data = os.urandom(100)
    created = await svc.sdk().files.create(file=("a.bin", data), purpose="lora")
    resp = await svc.http.get(f"/v1/files/{created.id}/content", headers={**svc.auth(), "Range": header})
    assert resp.status == status
    assert await resp.read() == data[expected]
    assert resp.headers.get("Content-Range") == content_range


async def test_a_range_past_the_end_is_416(svc):
    created = await svc.sdk().files.create(file=("a.bin", b"0123456789"), purpose="lora")
    resp = await svc.http.get(f"/v1/files/{created.id}/content", headers={**svc.auth(), "Range": "bytes=10-"})
    assert resp.status == 416
    assert resp.headers["Content-Range"] == "bytes */10"
    assert (await resp.json())["error"]["code"] == "range_not_satisfiable"


async def test_filenames_are_kept_as_labels_never_paths(svc):
    client = svc.sdk()
    created = await client.files.create(file=("../../etc/passwd", b"data"), purpose="lora")
    assert created.filename == "passwd"
    windows = await client.files.create(file=("C:\\fakepath\\cfg.json", b"{}"), purpose="lora")
    assert windows.filename == "cfg.json"
    assert all(key.startswith("objects/orgs/org-a/files/file-") for key in svc.stored_objects())


def raw_form(disposition: bytes) -> bytes:
    return (b'--b0undary\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nlora\r\n'
            b'--b0undary\r\nContent-Disposition: form-data; name="file"; ' + disposition + b'\r\n\r\n'
            b'data\r\n--b0undary--\r\n')


@pytest.mark.parametrize(("disposition", "words"), [
    (b"filename*=UTF-8''bell%07.bin", "control characters"),  # RFC 5987 lets any byte through
    (b'filename="bell\x07.bin"', "Malformed multipart body"),  # not even a valid header
])
async def test_a_filename_with_control_characters_is_refused(svc, disposition, words):
    # the SDK percent-encodes such names, so send the raw form a careless client might
    status, payload = await post_form(svc, raw_form(disposition),
                                      **{"Content-Type": "multipart/form-data; boundary=b0undary"})
    assert status == 400 and words in payload["error"]["message"]
    assert svc.stored_objects() == []


async def post_form(svc, form: FormData | bytes, **headers):
    resp = await svc.http.post("/v1/files", data=form, headers={**svc.auth(), **headers})
    return resp.status, await resp.json()


def form(*, purpose: str | None = "lora", file: bytes | None = b"abc", filename: str = "a.bin") -> FormData:
    out = FormData(default_to_multipart=True)
    if purpose is not None:
        out.add_field("purpose", purpose)
    if file is not None:
        out.add_field("file", file, filename=filename, content_type="application/octet-stream")
    return out


@pytest.mark.parametrize(("body", "param", "words"), [
    ({"purpose": None}, "purpose", "'purpose' is required"),
    ({"file": None}, "file", "'file' is required"),
    ({"file": b""}, "file", "'file' is empty"),
    ({"purpose": "finetune"}, "purpose", "purpose must be one of"),
    ({"purpose": None, "file": b""}, "purpose", "'file' is empty"),
])
async def test_bad_forms_get_a_400_naming_the_problem_and_leave_nothing(svc, body, param, words):
    status, payload = await post_form(svc, form(**body))
    assert status == 400
    assert payload["error"]["param"] == param and words in payload["error"]["message"]
    assert svc.stored_objects() == []
    assert (await svc.sdk().files.list()).data == []


async def test_a_body_that_is_not_multipart_is_refused(svc):
    status, payload = await post_form(svc, b'{"purpose": "lora"}', **{"Content-Type": "application/json"})
    assert status == 415 and "multipart/form-data" in payload["error"]["message"]


async def test_a_purpose_after_the_file_is_still_checked_and_the_stored_bytes_removed(svc):
    late = FormData()
    late.add_field("file", b"abc", filename="a.bin")
    late.add_field("purpose", "nonsense")
    status, payload = await post_form(svc, late)
    assert status == 400 and payload["error"]["param"] == "purpose"
    assert svc.stored_objects() == []


async def test_two_file_fields_are_refused(svc):
    twice = form()
    twice.add_field("file", b"def", filename="b.bin")
    status, payload = await post_form(svc, twice)
    assert status == 400 and "exactly one" in payload["error"]["message"]
    assert svc.stored_objects() == []
