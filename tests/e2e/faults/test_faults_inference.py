"""SIGKILL the worker in the middle of generating: a streamed request's client gets a clean error
event on each API (the SDK raises an APIError or sees response.failed; it neither hangs nor sees a
broken connection), a background
response is retried from scratch, and a background job that kills its worker every time ends
`failed` after a bounded number of deliveries instead of staying `in_progress`.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import anthropic
import openai
from openai import OpenAI

from shared.contracts.topology import INFERENCE_DELIVERY_LIMIT
from tests.e2e.faults.harness import LONG, LONG_PROMPT, MODEL, is_terminal_response, wait_until

STREAM_WAIT_SECONDS = 240


@dataclass
class StreamWatch:
    """One streamed request read on a thread by an official SDK: its text, and how the stream ended."""

    read: Callable[[], Iterator[tuple[str, str]]]  # yields (event kind, text delta)
    chunks: list[str] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)
    first_delta: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None
    ended_at: float | None = None
    thread: threading.Thread | None = None

    def run(self) -> None:
        try:
            for kind, text in self.read():
                self.kinds.append(kind)
                if text:
                    self.chunks.append(text)
                    self.first_delta.set()
        except BaseException as exc:  # noqa: BLE001 -- the test inspects what the SDK raised
            self.error = exc
        finally:
            self.ended_at = time.monotonic()
            self.first_delta.set()

    def start(self) -> StreamWatch:
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()
        if not self.first_delta.wait(STREAM_WAIT_SECONDS) or not self.chunks:
            raise AssertionError(f"no text arrived: {self.error!r}")
        return self

    def join(self) -> None:
        self.thread.join(STREAM_WAIT_SECONDS)
        assert not self.thread.is_alive(), "the client's stream hung after the worker died"


def streams(fault_topology, api) -> dict[str, StreamWatch]:
    """The same long request streamed on Chat Completions, Responses and Messages."""
    base = fault_topology.url("inference-router")
    oai = OpenAI(base_url=base + "/v1", api_key=api.key, max_retries=0, timeout=STREAM_WAIT_SECONDS)
    claude = anthropic.Anthropic(base_url=base, api_key=api.key, max_retries=0, timeout=STREAM_WAIT_SECONDS)
    messages = [{"role": "user", "content": LONG_PROMPT}]

    def chat():
        for chunk in oai.chat.completions.create(model=MODEL, messages=messages, max_tokens=LONG, temperature=0,
                                                 stream=True):
            yield "chunk", chunk.choices[0].delta.content if chunk.choices else ""

    def responses():
        for event in oai.responses.create(model=MODEL, input=messages, max_output_tokens=LONG, temperature=0,
                                          stream=True):
            yield event.type, getattr(event, "delta", "") if event.type == "response.output_text.delta" else ""

    def claude_messages():
        # this SDK version has no `temperature` argument; the API takes it
        for event in claude.messages.create(model=MODEL, messages=messages, max_tokens=LONG, stream=True,
                                            extra_body={"temperature": 0}):
            delta = getattr(event, "delta", None)
            yield event.type, getattr(delta, "text", "") if event.type == "content_block_delta" else ""

    return {"chat": StreamWatch(chat), "responses": StreamWatch(responses), "messages": StreamWatch(claude_messages)}


def test_a_killed_worker_ends_each_stream_with_an_error_and_retries_the_background_response(
        fault_topology, api, figures):
    background = api.background()
    api.wait_response(background["id"], lambda doc: doc["status"] != "queued")
    watches = {name: watch.start() for name, watch in streams(fault_topology, api).items()}
    assert api.response(background["id"])["status"] == "in_progress"  # all four are mid-generation now

    killed_at = time.monotonic()
    fault_topology.sigkill("gpu-worker")
    restart = fault_topology.restart("gpu-worker")

    for watch in watches.values():
        watch.join()
    chat, responses, messages = watches["chat"], watches["responses"], watches["messages"]
    # Chat Completions and Messages: the SDK raises on the stream's error event, not on a broken connection
    for watch, sdk in ((chat, openai), (messages, anthropic)):
        assert isinstance(watch.error, sdk.APIError), repr(watch.error)
        assert not isinstance(watch.error, sdk.APIConnectionError), repr(watch.error)
        assert "worker" in str(watch.error).lower(), str(watch.error)
    # Responses: the stream ends with response.failed, as the Responses event sequence says
    assert responses.error is None and responses.kinds[-1] == "response.failed", (responses.error, responses.kinds)

    done = api.wait_response(background["id"], is_terminal_response)
    assert done["status"] in ("completed", "incomplete"), done  # retried from scratch on the new worker
    figures["worker SIGKILL mid-stream: restart to ready (s)"] = f"{restart:.1f}"
    last_error = max(watch.ended_at for watch in watches.values())
    figures["worker SIGKILL mid-stream: kill to the client's error event (s)"] = f"{last_error - killed_at:.1f}"
    figures["worker SIGKILL mid-background: kill to `completed` after retry (s)"] = \
        f"{time.monotonic() - killed_at:.1f}"


def test_a_background_job_that_kills_every_worker_ends_failed(fault_topology, api, faults, trained_adapter,
                                                                figures):
    registered = api.register("crash-loop", api.upload_adapter(trained_adapter))
    assert api.wait_lora_done(registered.name)["status"] == "ready"
    held = faults["gpu-worker"].hold(registered.weights_file_id)

    def fresh_worker() -> None:
        fault_topology.sigkill("gpu-worker")
        fault_topology.wipe_worker_cache()  # so that the next worker fetches the adapter (and is held) again
        fault_topology.restart("gpu-worker")

    fresh_worker()
    background = api.background(16, lora=registered.name)
    # a delivery from a worker's affinity queue reaches the shared queue uncounted (it expires into it, and RabbitMQ
    # keeps no redelivery mark across dead-lettering); the shared queue counts the rest. Whether the first one came
    # that way depends on where the LoRA id hashes (earlier workers' queues are still bound): kill on every delivery
    # until the job is dead-lettered
    deliveries, last_kill = 0, time.monotonic()
    while True:
        # the worker took the job, started its Response and is fetching the adapter: it "crashes"
        wait_until(lambda n=deliveries: held.hits > n or api.response(background["id"])["status"] == "failed",
                   f"delivery {deliveries + 1} of the background job, or its end")
        if held.hits == deliveries:
            break
        deliveries = held.hits
        last_kill = time.monotonic()
        fresh_worker()
    faults["gpu-worker"].clear()

    done = api.wait_response(background["id"], is_terminal_response)
    assert done["status"] == "failed", done
    assert done["error"]["code"] == "job_dead_lettered" and "delivered" in done["error"]["message"], done
    assert INFERENCE_DELIVERY_LIMIT <= held.hits <= INFERENCE_DELIVERY_LIMIT + 1, held.hits
    figures["background job crashing its worker: deliveries before dead-letter"] = str(held.hits)
    figures["background job crashing its worker: last kill to `failed` (s)"] = f"{time.monotonic() - last_kill:.1f}"
