"""GET /v1/events: the caller's org's public events as SSE, filterable by type."""
import asyncio
import json

from tests.integration.registry.conftest import WAIT_SECONDS


class SSE:
    """Reads one event stream frame by frame; comments (the greeting, heartbeats) are counted, not returned."""

    def __init__(self, resp):
        self.resp = resp
        self.comments = 0

    async def line(self) -> bytes:
        """The next non-empty line."""
        while (line := await asyncio.wait_for(self.resp.content.readline(), WAIT_SECONDS)) == b"\n":
            pass
        return line

    async def frame(self) -> dict:
        fields: dict = {}
        while True:
            line = (await asyncio.wait_for(self.resp.content.readline(), WAIT_SECONDS)).decode().rstrip("\n")
            if line.startswith(":"):
                self.comments += 1
            elif line:
                key, _, value = line.partition(": ")
                fields[key] = value
            elif "data" in fields:
                return fields
            else:
                fields = {}  # a frame with only an id: where the stream starts

    async def event(self) -> tuple[str, dict]:
        fields = await self.frame()
        return fields["event"], json.loads(fields["data"])


async def open_stream(stack, org: str, **params) -> SSE:
    resp = await stack.http.get("/v1/events", params=params, headers=stack.auth(org))
    assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/event-stream")
    assert resp.headers["x-request-id"].startswith("req_")
    stream = SSE(resp)
    assert await stream.line() == b": connected\n"  # the greeting: from here on the stream is live
    assert (await stream.line()).startswith(b"id: ")  # where it starts in the org's event log
    return stream


async def test_each_org_streams_only_its_own_events(stack):
    stream_a = await open_stream(stack, "org-a")
    stream_b = await open_stream(stack, "org-b", types="lora.*")
    lora_a = await (await stack.create(org="org-a")).json()
    seen_a = [await stream_a.event() for _ in range(3)]
    assert [t for t, _ in seen_a] == ["file.created", "file.created", "lora.created"]
    assert {event["data"]["org_id"] for _, event in seen_a} == {"org-a"}
    event_type, cloud_event = seen_a[2]
    assert cloud_event["type"] == "lora.created" and cloud_event["specversion"] == "1.0"
    assert cloud_event["data"]["lora"] == lora_a and cloud_event["subject"] == lora_a["id"]

    lora_b = await (await stack.create(org="org-b", name="other-v1")).json()
    event_type, cloud_event = await stream_b.event()
    # org-a's events were published first: had any leaked, org-b would have seen them first
    assert event_type == "lora.created" and cloud_event["data"]["lora"]["id"] == lora_b["id"]
    assert cloud_event["data"]["org_id"] == "org-b"
    stream_a.resp.close()
    stream_b.resp.close()


async def test_heartbeats_keep_an_idle_stream_open(stack):
    stream = await open_stream(stack, "org-a", types="lora.deleted")
    await stack.create()  # lora.created and file.created are filtered out
    assert await stream.line() == b": heartbeat\n"
    await stack.http.delete("/v1/loras/funnier-v1", headers=stack.auth())
    event_type, _ = await stream.event()
    assert event_type == "lora.deleted"
    stream.resp.close()


async def test_an_unknown_type_filter_is_a_400_and_no_key_a_401(stack):
    # internal events (validation.status.changed, response.status.changed) are no public type
    resp = await stack.http.get("/v1/events", params={"types": "validation.*"}, headers=stack.auth())
    assert resp.status == 400 and (await resp.json())["error"]["param"] == "types"
    assert (await stack.http.get("/v1/events")).status == 401


async def test_shutting_down_ends_open_streams_instead_of_waiting_on_them(stack):
    stream = await open_stream(stack, "org-a")
    await stack.server.app.shutdown()  # what the runner does before it waits for open requests
    while (line := await asyncio.wait_for(stream.resp.content.readline(), WAIT_SECONDS)) != b"":
        assert line.startswith((b":", b"\n"))  # at most heartbeats before the end
    late = await stack.http.get("/v1/events", headers=stack.auth())
    assert late.status == 503  # a client reconnects to another instance
