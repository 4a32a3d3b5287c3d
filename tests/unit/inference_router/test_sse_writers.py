"""Each API's SSE framing, parsed back the way a client reads it."""
from __future__ import annotations

import json

from services.inference_router.chat_completions import ChatChunkWriter
from services.inference_router.messages import AnthropicEventWriter
from services.inference_router.response_docs import new_document, render
from services.inference_router.responses_stream import ResponsesEventWriter
from services.inference_router.sse import frame
from shared.contracts.messages import ResponseErrored, ResponseFinished

FINISHED = ResponseFinished(response_id="r", output_text="Hi there", finish_reason="stop", prompt_tokens=3,
                            completion_tokens=2)
ERRORED = ResponseErrored(response_id="r", code="worker_lost", message="gone")


def parse(frames: list[bytes]) -> list[tuple[str | None, str]]:
    """(event name, data) per frame: every frame is `event:`? + `data:` and ends in a blank line."""
    out = []
    for raw in frames:
        text = raw.decode()
        assert text.endswith("\n\n") and text.count("\n\n") == 1
        lines = text.strip("\n").split("\n")
        name = lines[0].removeprefix("event: ") if lines[0].startswith("event: ") else None
        out.append((name, lines[-1].removeprefix("data: ")))
    return out


def run(writer, error=False):
    frames = writer.start() + writer.delta("Hi") + writer.delta("") + writer.delta(" there")
    return frames + (writer.fail(ERRORED) if error else writer.finish(FINISHED))


def test_frame_keeps_unicode_and_newlines_inside_json():
    assert frame({"t": "é\nx"}, event="e") == 'event: e\ndata: {"t":"é\\nx"}\n\n'.encode()


def test_chat_chunks_end_with_done_and_usage_when_asked():
    events = parse(run(ChatChunkWriter("c1", "m", 1, include_usage=True)))
    assert events[-1] == (None, "[DONE]")
    chunks = [json.loads(data) for _, data in events[:-1]]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"]) == "Hi there"
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] == 5


def test_chat_chunks_without_usage_carry_no_usage_key():
    chunks = [json.loads(d) for _, d in parse(run(ChatChunkWriter("c1", "m", 1, include_usage=False)))[:-1]]
    assert all("usage" not in c for c in chunks) and chunks[-1]["choices"][0]["finish_reason"] == "stop"


def test_chat_error_is_a_top_level_error_frame():
    events = parse(run(ChatChunkWriter("c1", "m", 1, include_usage=False), error=True))
    assert json.loads(events[-2][1])["error"]["code"] == "worker_lost" and events[-1][1] == "[DONE]"


def responses_writer():
    return ResponsesEventWriter(render(new_document(response_id="resp_1", org_id="o", model="m", messages=[])))


def test_responses_sequence_is_numbered_and_complete():
    events = parse(run(responses_writer()))
    payloads = [json.loads(d) for _, d in events]
    assert [name for name, _ in events] == [p["type"] for p in payloads]
    assert [p["sequence_number"] for p in payloads] == list(range(len(payloads)))
    assert payloads[0]["type"] == "response.created" and payloads[-1]["type"] == "response.completed"
    assert payloads[-1]["response"]["output"][0]["content"][0]["text"] == "Hi there"
    assert all(e[1] != "[DONE]" for e in events)


def test_responses_failure_ends_with_response_failed():
    payloads = [json.loads(d) for _, d in parse(run(responses_writer(), error=True))]
    assert payloads[-1]["type"] == "response.failed"
    assert payloads[-1]["response"]["error"]["code"] == "worker_lost"


def test_anthropic_event_names():
    names = [name for name, _ in parse(run(AnthropicEventWriter("msg_1", "m")))]
    assert names == ["message_start", "content_block_start", "ping", "content_block_delta",
                     "content_block_delta", "content_block_stop", "message_delta", "message_stop"]
    failed = parse(run(AnthropicEventWriter("msg_1", "m"), error=True))
    assert failed[-1][0] == "error" and json.loads(failed[-1][1])["error"]["type"] == "api_error"
