"""The size caps, and a client that goes away mid-upload: a 4xx (when anyone is listening) and nothing left behind."""
from __future__ import annotations

import asyncio
import json
import os

import openai
import pytest

from tests.integration.file_ingest.conftest import MiB

BOUNDARY = b"b0undary"


def form_head(purpose: bytes = b"lora") -> bytes:
    return (b"--" + BOUNDARY + b'\r\nContent-Disposition: form-data; name="purpose"\r\n\r\n' + purpose + b"\r\n"
            b"--" + BOUNDARY + b'\r\nContent-Disposition: form-data; name="file"; filename="w.bin"\r\n\r\n')


def request_head(svc, content_length: int, *extra: str) -> bytes:
    lines = ["POST /v1/files HTTP/1.1", f"Host: {svc.server.host}:{svc.server.port}",
             f"Authorization: Bearer {svc.keys['org-a']}",
             f"Content-Type: multipart/form-data; boundary={BOUNDARY.decode()}",
             f"Content-Length: {content_length}", *extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict]:
    status_line = await reader.readline()
    headers = {}
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode().partition(":")
        headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers["content-length"]))
    return int(status_line.split()[1]), json.loads(body)


async def test_an_oversize_file_from_the_sdk_gets_a_413_envelope(make_service):
    svc = await make_service(max_file_bytes=1 * MiB)
    with pytest.raises(openai.APIStatusError) as refused:
        await svc.sdk().files.create(file=("big.bin", os.urandom(2 * MiB)), purpose="lora")
    assert refused.value.status_code == 413
    assert refused.value.body["code"] == "file_too_large"
    assert svc.stored_objects() == []


async def test_an_oversize_stream_without_content_length_is_cut_off_at_the_cap(make_service):
    svc = await make_service(max_file_bytes=1 * MiB)

    async def body():
        yield form_head()
        for _ in range(3):
            yield b"\0" * MiB
        yield b"\r\n--" + BOUNDARY + b"--\r\n"

    resp = await svc.http.post("/v1/files", data=body(), headers={
        **svc.auth(), "Content-Type": f"multipart/form-data; boundary={BOUNDARY.decode()}"})
    assert resp.status == 413
    assert (await resp.json())["error"]["code"] == "file_too_large"
    assert svc.stored_objects() == []
    assert (await svc.sdk().files.list()).data == []


async def test_expect_100_continue_is_answered_413_before_the_body_is_sent(make_service):
    svc = await make_service(max_file_bytes=1 * MiB)
    reader, writer = await asyncio.open_connection(svc.server.host, svc.server.port)
    try:
        writer.write(request_head(svc, 5 * MiB, "Expect: 100-continue"))
        await writer.drain()
        status, body = await read_response(reader)  # no body byte was sent
    finally:
        writer.close()
    assert status == 413 and body["error"]["code"] == "file_too_large"


async def test_expect_100_continue_within_the_cap_proceeds(make_service):
    svc = await make_service(max_file_bytes=1 * MiB)
    payload = form_head() + b"hello" + b"\r\n--" + BOUNDARY + b"--\r\n"
    reader, writer = await asyncio.open_connection(svc.server.host, svc.server.port)
    try:
        writer.write(request_head(svc, len(payload), "Expect: 100-continue"))
        await writer.drain()
        assert (await reader.readline()).startswith(b"HTTP/1.1 100")
        await reader.readline()
        writer.write(payload)
        await writer.drain()
        status, body = await read_response(reader)
    finally:
        writer.close()
    assert status == 200 and body["bytes"] == 5


async def wait_for(condition, attempts: int = 200) -> bool:
    for _ in range(attempts):
        if condition():
            return True
        await asyncio.sleep(0.02)
    return condition()


async def test_a_client_that_disconnects_mid_upload_leaves_no_file_and_no_object(svc):
    _reader, writer = await asyncio.open_connection(svc.server.host, svc.server.port)
    writer.write(request_head(svc, 8 * MiB) + form_head() + os.urandom(2 * MiB))
    await writer.drain()
    # the service is writing the object when the client goes away
    assert await wait_for(lambda: svc.stored_objects() != [])
    writer.transport.abort()
    assert await wait_for(lambda: svc.stored_objects() == [])
    assert (await svc.sdk().files.list()).data == []


async def test_a_body_that_ends_before_its_closing_boundary_is_refused(svc):
    truncated = form_head() + b"only half a file"
    resp = await svc.http.post("/v1/files", data=truncated, headers={
        **svc.auth(), "Content-Type": f"multipart/form-data; boundary={BOUNDARY.decode()}"})
    assert resp.status == 400
    assert svc.stored_objects() == []


async def test_an_oversize_upload_part_gets_a_413(make_service):
    svc = await make_service(max_upload_part_bytes=1 * MiB)
    client = svc.sdk()
    upload = await client.uploads.create(bytes=3 * MiB, filename="w.bin", mime_type="application/octet-stream",
                                         purpose="lora")
    with pytest.raises(openai.APIStatusError) as refused:
        await client.uploads.parts.create(upload_id=upload.id, data=os.urandom(2 * MiB))
    assert refused.value.status_code == 413
    assert svc.stored_objects() == []
