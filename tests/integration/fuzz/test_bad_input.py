"""Hand-written bad input against `loraserve dev`: oversize bodies and headers, invalid UTF-8, huge metadata,
a client that stalls mid-body. Each gets a 4xx (in the API's envelope wherever the app answers), never a
500 or a hang, and leaves no File, LoRA or stored bytes behind."""
from __future__ import annotations

import re
import socket
import time

import pytest
import requests

from tests.integration.fuzz.checks import check_error_envelope
from tests.integration.fuzz.server import BODY_IDLE_TIMEOUT_SECONDS, DevServer

MODEL = "loraserve/kimi-k2-tiny"
JSON_LIMIT = 4 * 1024 * 1024  # Settings.max_json_body_bytes
PATIENCE_SECONDS = 15 * BODY_IDLE_TIMEOUT_SECONDS  # a bound on every wait, far above the cut-off
INFERENCE = {
    "/v1/chat/completions": {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4},
    "/v1/responses": {"model": MODEL, "input": "hi", "max_output_tokens": 4},
    "/v1/messages": {"model": MODEL, "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]},
}
JSON_ENDPOINTS = ["/v1/loras", "/v1/uploads", *INFERENCE]
HUGE_METADATA = {
    "17 pairs": {f"k{i}": "v" for i in range(17)},
    "65-char key": {"k" * 65: "v"},
    "513-char value": {"lora_note": "v" * 513},
}


def post(server: DevServer, path: str, **kwargs) -> requests.Response:
    return requests.post(server.url + path, headers={**server.auth("tidy"), **kwargs.pop("headers", {})},
                         timeout=PATIENCE_SECONDS, **kwargs)


def assert_envelope(response: requests.Response, path: str, status: int) -> dict:
    assert response.status_code == status, (response.status_code, response.text[:300])
    check_error_envelope(path, response.status_code, response.content)
    return response.json()


def raw_exchange(server: DevServer, head: bytes, body_part: bytes) -> tuple[bytes, float]:
    """Send a request head and part of its body, then nothing: what comes back, and how long it took."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=PATIENCE_SECONDS) as sock:
        sock.sendall(head + body_part)
        started, received = time.monotonic(), b""
        while chunk := sock.recv(65536):  # ends when the server closes the connection
            received += chunk
        return received, time.monotonic() - started


@pytest.mark.parametrize("path", JSON_ENDPOINTS)
def test_a_json_body_over_the_limit_is_a_413_envelope(dev_server, path):
    body = b'{"pad": "' + b"x" * JSON_LIMIT + b'"}'
    assert_envelope(post(dev_server, path, data=body, headers={"Content-Type": "application/json"}), path, 413)


def test_an_oversize_body_sent_without_a_length_is_a_413_envelope_too(dev_server):
    def chunks():
        yield b'{"pad": "'
        for _ in range(5):
            yield b"x" * (1024 * 1024)
        yield b'"}'

    response = post(dev_server, "/v1/loras", data=chunks(), headers={"Content-Type": "application/json"})
    assert_envelope(response, "/v1/loras", 413)


@pytest.mark.parametrize("headers", [
    {"x-padding": "x" * 64 * 1024},
    {f"x-h{i}": "v" for i in range(300)},
], ids=["one 64 KiB header", "300 headers"])
def test_oversize_headers_are_a_4xx_envelope_not_a_500(dev_server, headers):
    response = requests.get(dev_server.url + "/v1/loras", headers={**dev_server.auth("tidy"), **headers},
                            timeout=PATIENCE_SECONDS)
    assert 400 <= response.status_code < 500, response.status_code
    assert_envelope(response, "/v1/loras", response.status_code)  # refused by the HTTP parser, still the envelope
    assert requests.get(dev_server.url + "/healthz", timeout=PATIENCE_SECONDS).status_code == 200


@pytest.mark.parametrize("path", ["/v1/loras/" + "a" * 64 * 1024,
                                  "/v1/organization/usage/completions?" + "&".join(["lora_ids=x" * 40] * 40)])
def test_an_oversize_url_is_a_400_envelope_not_a_500(dev_server, path):
    response = requests.get(dev_server.url + path, headers=dev_server.auth("tidy"), timeout=PATIENCE_SECONDS)
    assert_envelope(response, path.split("?")[0], 400)
    assert response.headers["Content-Type"].startswith("application/json")


@pytest.mark.parametrize("path", JSON_ENDPOINTS)
def test_a_body_that_is_not_utf8_is_a_400_envelope(dev_server, path):
    body = b'{"name": "caf\xe9 \xff\xfe"}'
    response = post(dev_server, path, data=body, headers={"Content-Type": "application/json"})
    assert_envelope(response, path, 400)


def test_a_form_field_that_is_not_utf8_is_a_400_envelope(dev_server):
    response = post(dev_server, "/v1/files", files={"file": ("a.json", b"{}")}, data={"purpose": b"lo\xffra"})
    body = assert_envelope(response, "/v1/files", 400)
    assert body["error"]["param"] == "purpose"


@pytest.mark.parametrize("path", ["/v1/loras/%ff%fe", "/v1/files?purpose=%ff", "/v1/events?types=%ff"])
def test_percent_encoded_bytes_that_are_not_utf8_never_cause_a_5xx(dev_server, path):
    # what they decode to is a name or filter like any other: a 404, a 400 or an empty list
    response = requests.get(dev_server.url + path, headers=dev_server.auth("tidy"), timeout=PATIENCE_SECONDS,
                            stream=True)
    assert response.status_code < 500, (response.status_code, response.text[:300])
    check_error_envelope(path, response.status_code, response.content)


@pytest.mark.parametrize("what", HUGE_METADATA)
@pytest.mark.parametrize("path", INFERENCE)
def test_metadata_over_openais_limits_is_a_400_naming_metadata(dev_server, path, what):
    response = post(dev_server, path, json={**INFERENCE[path], "metadata": HUGE_METADATA[what]})
    body = assert_envelope(response, path, 400)
    message = body["error"]["message"]
    assert "metadata" in message.lower(), message
    if path != "/v1/messages":
        assert body["error"]["param"].startswith("metadata"), body


@pytest.mark.parametrize("sampling", [{"top_p": 0.0}, {"temperature": 1e-300}, {"temperature": 5e-324},
                                      {"temperature": 2.0, "top_p": 1e-300}], ids=str)
@pytest.mark.parametrize("path", INFERENCE)
def test_extreme_but_valid_sampling_parameters_get_an_answer(dev_server, path, sampling):
    if path == "/v1/messages" and sampling.get("temperature", 0) > 1:
        sampling = {**sampling, "temperature": 1.0}  # Anthropic's range is 0..1
    response = post(dev_server, path, json={**INFERENCE[path], **sampling})
    assert response.status_code == 200, response.text[:300]


def test_a_responses_input_with_no_message_is_a_400_naming_input(dev_server):
    body = assert_envelope(post(dev_server, "/v1/responses", json={"model": MODEL, "input": []}),
                           "/v1/responses", 400)
    assert body["error"]["param"].startswith("input")


def test_file_ids_that_are_dot_segments_are_unknown_files_not_a_503(dev_server):
    response = post(dev_server, "/v1/loras", json={"name": "dots", "supported_models": [MODEL],
                                                   "config_file_id": ".", "weights_file_id": ".."})
    body = assert_envelope(response, "/v1/loras", 400)
    assert body["error"]["param"] == "config_file_id", body


def test_a_client_that_stalls_mid_json_body_is_cut_off_with_a_408(dev_server):
    head = (b"POST /v1/loras HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sk-tidy-0123456789\r\n"
            b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n")
    received, waited = raw_exchange(dev_server, head, b'{"name": "half-a-bo')
    status_line, _, rest = received.partition(b"\r\n")
    assert status_line.startswith(b"HTTP/1.1 408"), received[:300]
    check_error_envelope("/v1/loras", 408, rest.partition(b"\r\n\r\n")[2])
    assert waited < PATIENCE_SECONDS


def test_a_client_that_stalls_mid_upload_is_cut_off_and_its_bytes_are_dropped(dev_server):
    boundary = "stall"
    start = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nlora\r\n"
             f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"w.safetensors\"\r\n"
             "Content-Type: application/octet-stream\r\n\r\n").encode() + b"\0" * 300_000
    head = (f"POST /v1/files HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sk-tidy-0123456789\r\n"
            f"Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {len(start) * 4}\r\n\r\n"
            ).encode()
    received, waited = raw_exchange(dev_server, head, start)
    assert re.match(rb"HTTP/1\.[01] 4\d\d ", received), received[:300]
    assert waited < PATIENCE_SECONDS
    assert stored_objects(dev_server, "tidy") == []


def test_the_server_answers_others_while_a_client_stalls(dev_server):
    head = (b"POST /v1/uploads HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sk-tidy-0123456789\r\n"
            b"Content-Type: application/json\r\nContent-Length: 500\r\n\r\n{")
    with socket.create_connection(("127.0.0.1", dev_server.port), timeout=PATIENCE_SECONDS) as stalled:
        stalled.sendall(head)
        response = requests.get(dev_server.url + "/v1/models", headers=dev_server.auth("tidy"), timeout=5)
        assert response.status_code == 200


def test_a_405_names_the_allowed_methods(dev_server):
    response = requests.put(dev_server.url + "/v1/loras", headers=dev_server.auth("tidy"), timeout=5)
    assert_envelope(response, "/v1/loras", 405)
    assert {"GET", "POST"} <= {m.strip() for m in response.headers["Allow"].split(",")}


def stored_objects(server: DevServer, org: str) -> list[str]:
    objects = server.data_dir / "blobs" / "objects" / "orgs" / org
    incoming = server.data_dir / "blobs" / "incoming"
    found = [p for root in (objects, incoming) if root.exists() for p in root.rglob("*") if p.is_file()]
    return sorted(str(p.relative_to(server.data_dir)) for p in found)


def test_rejected_requests_leave_nothing_behind(dev_server):
    """Runs last in this module: every request above came from org `tidy` and was refused."""
    for path in ("/v1/files", "/v1/loras"):
        response = requests.get(dev_server.url + path, headers=dev_server.auth("tidy"), timeout=5)
        assert response.status_code == 200
        assert response.json()["data"] == [], path
    assert stored_objects(dev_server, "tidy") == []
    assert dev_server.alive(), dev_server.log_tail()
    # the app's own log of a 500 (aiohttp logs the requests its parser refuses; those are 400s)
    assert b"unhandled error" not in dev_server.log_path.read_bytes(), dev_server.log_tail()


def test_a_body_whose_gzip_encoding_is_broken_is_a_400_envelope(dev_server):
    response = post(dev_server, "/v1/loras", data=b"\x1f\x8b\x08\x00not really gzip",
                    headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})
    assert_envelope(response, "/v1/loras", 400)


def test_a_multipart_body_whose_gzip_encoding_is_broken_is_a_400_envelope(dev_server):
    boundary = "gz"
    form = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nlora\r\n--{boundary}--\r\n")
    response = post(dev_server, "/v1/files", data=b"\x1f\x8b\x08\x00" + form.encode(),
                    headers={"Content-Type": f"multipart/form-data; boundary={boundary}", "Content-Encoding": "gzip"})
    assert_envelope(response, "/v1/files", 400)


def test_a_broken_chunked_body_is_a_4xx_not_a_500(dev_server):
    head = (b"POST /v1/loras HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sk-tidy-0123456789\r\n"
            b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
    received, _ = raw_exchange(dev_server, head, b"4\r\n{\"a\"\r\nzz\r\nnot a chunk\r\n0\r\n\r\n")
    assert re.match(rb"HTTP/1\.[01] 4\d\d ", received), received[:300]
