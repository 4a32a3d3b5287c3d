"""SIGKILL the worker in the middle of generating: a streamed request's client gets a clean error
event (the SDK raises an APIError, it neither hangs nor sees a broken connection), a background
response is retried from scratch, and a background job that kills its worker every time ends
`failed` after a bounded number of deliveries instead of staying `in_progress`.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import openai
from openai import OpenAI

from tests.reliability.harness import LONG, LONG_PROMPT, MODEL, is_terminal_response, wait_until

STREAM_WAIT_SECONDS = 240


@dataclass
class StreamWatch:
    """A streamed chat completion read on a thread: what arrived, and how it ended."""

    client: OpenAI
    chunks: list[str] = field(default_factory=list)
    first_delta: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None
    ended_at: float | None = None
    completed: bool = False

    def run(self) -> None:
        try:
            stream = self.client.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": LONG_PROMPT}],
                max_tokens=LONG, temperature=0, stream=True)
            for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    self.chunks.append(chunk.choices[0].delta.content)
                    self.first_delta.set()
            self.completed = True
        except BaseException as exc:  # noqa: BLE001 -- the test inspects what the SDK raised
            self.error = exc
        finally:
            self.ended_at = time.monotonic()
            self.first_delta.set()

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.run, daemon=True)
        thread.start()
        return thread


def router_client(topology, api) -> OpenAI:
    return OpenAI(base_url=topology.url("inference-router") + "/v1", api_key=api.key, max_retries=0,
                  timeout=STREAM_WAIT_SECONDS)


def test_a_killed_worker_ends_the_stream_with_an_error_and_retries_the_background_response(
        topology, api, figures):
    background = api.background()
    api.wait_response(background["id"], lambda doc: doc["status"] != "queued")
    watch = StreamWatch(router_client(topology, api))
    thread = watch.start()
    assert watch.first_delta.wait(STREAM_WAIT_SECONDS) and watch.chunks, watch.error
    assert api.response(background["id"])["status"] == "in_progress"  # both are mid-generation now

    killed_at = time.monotonic()
    topology.sigkill("gpu-worker")
    restart = topology.restart("gpu-worker")

    thread.join(STREAM_WAIT_SECONDS)
    assert not thread.is_alive(), "the client's stream hung after the worker died"
    assert not watch.completed, "the stream claimed to complete although its worker was killed"
    assert isinstance(watch.error, openai.APIError), repr(watch.error)
    assert not isinstance(watch.error, openai.APIConnectionError), repr(watch.error)  # a clean SSE error event
    assert "worker" in str(watch.error).lower(), str(watch.error)

    done = api.wait_response(background["id"], is_terminal_response)
    assert done["status"] in ("completed", "incomplete"), done  # retried from scratch on the new worker
    figures["worker SIGKILL mid-stream: restart to ready (s)"] = f"{restart:.1f}"
    figures["worker SIGKILL mid-stream: kill to the client's error event (s)"] = f"{watch.ended_at - killed_at:.1f}"
    figures["worker SIGKILL mid-background: kill to `completed` after retry (s)"] = \
        f"{time.monotonic() - killed_at:.1f}"


def test_a_background_job_that_kills_every_worker_ends_failed(topology, api, faults, trained_adapter, figures):
    registered = api.register("crash-loop", api.upload_adapter(trained_adapter))
    assert api.wait_lora_done(registered.name)["status"] == "ready"
    held = faults["gpu-worker"].hold(registered.weights_file_id)

    def fresh_worker() -> None:
        topology.sigkill("gpu-worker")
        topology.wipe_worker_cache()  # so that the next worker fetches the adapter (and is held) again
        topology.restart("gpu-worker")

    fresh_worker()
    background = api.background(16, lora=registered.name)
    for delivery in (1, 2, 3):
        # the worker took the job, started its Response and is fetching the adapter: it "crashes"
        wait_until(lambda n=delivery: held.hits >= n, f"delivery {delivery} of the background job")
        last_kill = time.monotonic()
        fresh_worker()
    faults["gpu-worker"].clear()

    done = api.wait_response(background["id"], is_terminal_response)
    assert done["status"] == "failed", done
    assert done["error"]["code"] == "job_dead_lettered" and "delivered" in done["error"]["message"], done
    assert held.hits == 3, "the job reached a handler again after its delivery limit"
    figures["background job crashing its worker: deliveries before dead-letter"] = str(held.hits)
    figures["background job crashing its worker: last kill to `failed` (s)"] = f"{time.monotonic() - last_kill:.1f}"
