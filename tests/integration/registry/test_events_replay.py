"""GET /v1/events resumes from the org's event log: Last-Event-ID, ?after=, ?since=, retention, isolation."""
import asyncio
import json
import time

from shared.contracts import topology as t
from shared.contracts.cloudevents import CloudEvent
from shared.contracts.messages import FileCreated, LoraDeleted, ResponseCompleted, ResponseStatusChanged
from tests.integration.registry.conftest import WAIT_SECONDS
from tests.integration.registry.test_events_stream import SSE

SOURCE = "loraserve/file-ingest"


async def publish_files(stack, count: int, org: str = "org-a") -> list[str]:
    """`count` file.created events, as file-ingest publishes them; their CloudEvents ids in order."""
    ids = []
    for n in range(count):
        message = FileCreated(org_id=org, file={"id": f"file-{n}"})
        event = await stack.platform.bus.publish(message, source=SOURCE)
        ids.append(event.id)
    return ids


async def connect(stack, org: str = "org-a", headers: dict | None = None, **params) -> SSE:
    resp = await stack.http.get("/v1/events", params=params, headers={**stack.auth(org), **(headers or {})})
    assert resp.status == 200, await resp.text()
    stream = SSE(resp)
    assert await stream.line() == b": connected\n"
    return stream


async def start_id(stream: SSE) -> int:
    """The frame with only an id that tells where the stream starts."""
    line = await stream.line()
    assert line.startswith(b"id: ") and await stream.resp.content.readline() == b"\n"
    return int(line[4:])


async def events(stream: SSE, count: int) -> list[tuple[int, str, dict]]:
    """The next `count` events as (log id, type, CloudEvent)."""
    frames = [await stream.frame() for _ in range(count)]
    return [(int(f["id"]), f["event"], json.loads(f["data"])) for f in frames]


async def wait_logged(stack, org: str, count: int) -> None:
    """Until the org's log holds `count` events (read through the API, as a client would)."""
    stream = await connect(stack, org, after="0")
    await start_id(stream)
    await events(stream, count)
    stream.resp.close()


async def two_batches(stack, first: int, second: int) -> tuple[float, list[str]]:
    """`first` events, logged; a moment; `second` more events: (that moment, the second batch's ids)."""
    await publish_files(stack, first)
    await wait_logged(stack, "org-a", first)
    midway = time.time()
    return midway, await publish_files(stack, second)


async def error_and_end(stream: SSE) -> tuple[int, dict]:
    frame = await stream.frame()
    assert frame["event"] == "error"
    assert await asyncio.wait_for(stream.resp.content.read(), WAIT_SECONDS) == b""  # and the stream ended
    return int(frame["id"]), json.loads(frame["data"])["error"]


async def test_reconnecting_with_last_event_id_across_1000_events_loses_and_repeats_none(stack):
    stream = await connect(stack)
    last_id = str(await start_id(stream))
    publishing = asyncio.create_task(publish_files(stack, 1000))
    received: list[tuple[int, str]] = []
    connections = 1
    while len(received) < 1000:
        for seq, _, event in await events(stream, min(137, 1000 - len(received))):
            received.append((seq, event["id"]))
            last_id = str(seq)
        stream.resp.close()  # the client drops the connection, while events keep coming
        if len(received) < 1000:
            stream = await connect(stack, headers={"Last-Event-ID": last_id})
            assert await start_id(stream) == int(last_id)
            connections += 1
    published = await publishing
    assert connections == 8
    assert [cloud_id for _, cloud_id in received] == published  # every event, once, in order
    assert [seq for seq, _ in received] == list(range(1, 1001))


async def test_after_replays_what_followed_then_goes_live_without_a_seam(stack):
    published = await publish_files(stack, 10)
    await wait_logged(stack, "org-a", 10)
    stream = await connect(stack, after="4")
    assert await start_id(stream) == 4
    replayed = await events(stream, 6)
    expected = list(zip(range(5, 11), published[4:], strict=True))
    assert [(seq, event["id"]) for seq, _, event in replayed] == expected
    live = await publish_files(stack, 1)
    assert [(seq, kind, event["id"]) for seq, kind, event in await events(stream, 1)] == [(11, "file.created",
                                                                                          live[0])]
    stream.resp.close()


async def test_a_replay_keeps_the_type_filter_and_response_outcomes_are_public_events(stack):
    await publish_files(stack, 2)
    bus = stack.platform.bus
    await bus.publish(LoraDeleted(org_id="org-a", lora={"id": "lora-1"}), source=SOURCE)
    internal = ResponseStatusChanged(response_id="resp_1", org_id="org-a", model="m", status="completed",
                                     seq=3)
    await bus.publish(internal, source=SOURCE)  # never in the log
    await bus.publish(ResponseCompleted(org_id="org-a", response={"id": "resp_1", "status": "completed"}),
                      source=SOURCE)
    stream = await connect(stack, after="0", types="lora.*,response.*")
    await start_id(stream)
    seen = await events(stream, 2)
    assert [(seq, kind) for seq, kind, _ in seen] == [(3, "lora.deleted"), (4, "response.completed")]
    assert seen[1][2]["data"]["response"]["id"] == "resp_1"
    stream.resp.close()


async def test_since_replays_from_a_time(stack):
    midway, later = await two_batches(stack, 3, 2)
    stream = await connect(stack, since=f"{midway:.6f}")
    assert await start_id(stream) == 3
    assert [(seq, event["id"]) for seq, _, event in await events(stream, 2)] == [(4, later[0]), (5, later[1])]
    stream.resp.close()


async def test_an_id_past_the_retention_gets_an_error_event_with_where_to_resume(stack):
    midway, kept = await two_batches(stack, 5, 3)
    await wait_logged(stack, "org-a", 8)
    event_log = stack.registry.hub.log
    assert await event_log.sweep(now=midway + event_log.retention_seconds) == 5  # events 1-5 expired

    stream = await connect(stack, headers={"Last-Event-ID": "2"})
    resume, error = await error_and_end(stream)
    assert (resume, error["code"], error["param"], error["type"]) == (5, "events_expired", "Last-Event-ID",
                                                                     "invalid_request_error")
    assert "retention" in error["message"]
    stream = await connect(stack, headers={"Last-Event-ID": str(resume)})  # what EventSource does next
    assert await start_id(stream) == 5
    assert [event["id"] for _, _, event in await events(stream, 3)] == kept
    stream.resp.close()

    # every event expired: the ids still go on from where they were
    assert await event_log.sweep(now=time.time() + event_log.retention_seconds) == 3
    resume, error = await error_and_end(await connect(stack, after="0"))
    assert (resume, error["code"], error["param"]) == (8, "events_expired", "after")
    resume, error = await error_and_end(await connect(stack, since="0"))
    assert (resume, error["code"], error["param"]) == (8, "events_expired", "since")
    stream = await connect(stack, after="8")
    await start_id(stream)
    await publish_files(stack, 1)
    assert (await events(stream, 1))[0][0] == 9
    stream.resp.close()


async def test_an_id_never_given_gets_an_error_event_and_a_malformed_one_a_400(stack):
    await publish_files(stack, 2)
    await wait_logged(stack, "org-a", 2)
    resume, error = await error_and_end(await connect(stack, headers={"Last-Event-ID": "999"}))
    assert (resume, error["code"]) == (2, "event_id_unknown")
    for params, headers, param in (({"after": "abc"}, {}, "after"), ({"after": "-1"}, {}, "after"),
                                   ({}, {"Last-Event-ID": "1f0e7a52-6a4c-4c1b-9d1e"}, "Last-Event-ID"),
                                   ({"since": "yesterday"}, {}, "since"),
                                   ({"since": "253402300800"}, {}, "since")):  # past year 9999
        resp = await stack.http.get("/v1/events", params=params, headers={**stack.auth(), **headers})
        assert resp.status == 400, params
        assert (await resp.json())["error"]["param"] == param


async def test_another_org_replays_nothing_of_this_one(stack):
    await publish_files(stack, 5, org="org-a")
    await wait_logged(stack, "org-a", 5)
    stream_b = await connect(stack, "org-b", after="0")
    assert await start_id(stream_b) == 0
    own = await publish_files(stack, 1, org="org-b")
    seen = await events(stream_b, 1)
    # org-a's five came first: had any leaked, org-b would have seen them before its own
    assert [(seq, event["id"], event["data"]["org_id"]) for seq, _, event in seen] == [(1, own[0], "org-b")]
    stream_b.resp.close()
    # org-a's ids mean nothing here
    resume, error = await error_and_end(await connect(stack, "org-b", after="5"))
    assert (resume, error["code"]) == (1, "event_id_unknown")


async def test_an_event_published_again_is_logged_once(stack):
    bus = stack.platform.bus
    event = await bus.publish(FileCreated(org_id="org-a", file={"id": "file-x"}), source=SOURCE)
    again = CloudEvent.model_validate(event.model_dump())
    for _ in range(3):  # what an outbox does after a crash between publish and marking it published
        await bus.publish_event(again, exchange=t.EVENTS, routing_key=t.event_key("org-a", "file.created"))
    after = await publish_files(stack, 1)
    stream = await connect(stack, after="0")  # the log holds each event once: the next has the next id
    await start_id(stream)
    assert [(seq, e["id"]) for seq, _, e in await events(stream, 2)] == [(1, event.id), (2, after[0])]
    stream.resp.close()
