"""Usage metering: every finished request recorded once, reported per org at OpenAI's usage path and shape."""
from __future__ import annotations

import time

import aiohttp
import anthropic
import openai
import pytest

from shared.contracts.messages import ResponseStatusChanged
from tests.integration.inference_router.harness import TINY, start_stack, wait_for

LORA = {"lora": "funny", "completion_window": "priority"}
USAGE = "/v1/organization/usage/completions"


@pytest.fixture
async def stack(tmp_path):
    stack = await start_stack(tmp_path)
    yield stack
    await stack.close()


def openai_client(stack, org: str = "org-a") -> openai.AsyncOpenAI:
    key = stack.keys[org]
    return openai.AsyncOpenAI(base_url=stack.url(), api_key=key, admin_api_key=key, max_retries=0)


async def report(stack, org: str = "org-a", params=None) -> tuple[int, dict]:
    headers = {"Authorization": f"Bearer {stack.keys[org]}"}
    async with aiohttp.ClientSession() as session, session.get(stack.url(USAGE), params=params,
                                                               headers=headers) as response:
        return response.status, await response.json()


async def totals(stack, org: str = "org-a") -> tuple[int, int, int]:
    status, page = await report(stack, org, {"start_time": str(int(time.time()) - 60), "bucket_width": "1h"})
    assert status == 200, page
    results = [r for bucket in page["data"] for r in bucket["results"]]
    return (sum(r["input_tokens"] for r in results), sum(r["output_tokens"] for r in results),
            sum(r["num_model_requests"] for r in results))


async def key_id_of(stack, org: str) -> str:
    return next(r.id for r in await stack.platform.identity.list() if r.org_id == org)


async def test_usage_equals_the_tokens_every_api_reported(stack):
    async with openai_client(stack) as api:
        await _every_api(stack, api)


async def _every_api(stack, api) -> None:
    reported: list[tuple[int, int]] = []
    chat = await api.chat.completions.create(model=TINY, messages=[{"role": "user", "content": "a b"}],
                                             extra_body={"metadata": LORA})
    reported.append((chat.usage.prompt_tokens, chat.usage.completion_tokens))
    stream = await api.chat.completions.create(model=TINY, messages=[{"role": "user", "content": "c d e"}],
                                               stream=True, stream_options={"include_usage": True})
    usage = [c.usage async for c in stream if c.usage][-1]
    reported.append((usage.prompt_tokens, usage.completion_tokens))
    response = await api.responses.create(model=TINY, input="f g h i", metadata=LORA)
    reported.append((response.usage.input_tokens, response.usage.output_tokens))
    async with api.responses.stream(model=TINY, input="j") as events:
        final = await events.get_final_response()
    reported.append((final.usage.input_tokens, final.usage.output_tokens))
    async with anthropic.AsyncAnthropic(base_url=stack.url(""), api_key=stack.keys["org-a"],
                                        max_retries=0) as claude:
        message = await claude.messages.create(model=TINY, max_tokens=64,
                                               messages=[{"role": "user", "content": "k l"}])
    reported.append((message.usage.input_tokens, message.usage.output_tokens))
    background = await api.responses.create(model=TINY, input="m n o", background=True)
    await wait_for(lambda: (background.id, "completed") in stack.folded)
    done = await api.responses.retrieve(background.id)
    reported.append((done.usage.input_tokens, done.usage.output_tokens))

    await wait_for(lambda: True)
    assert await totals(stack) == (sum(i for i, _ in reported), sum(o for _, o in reported), 6)
    record = await stack.router.usage.get("org-a", background.id)
    assert record["api_key_id"] == await key_id_of(stack, "org-a") and record["kind"] == "responses.background"
    chat_record = await stack.router.usage.get("org-a", chat.id)
    assert chat_record["lora_id"] == stack.loras["funny"]["lora"]["id"]
    assert chat_record["completion_window"] == "priority" and chat_record["latency_seconds"] >= 0


async def test_a_background_job_run_twice_and_redelivered_events_count_once(stack):
    async with openai_client(stack) as api:
        created = await api.responses.create(model=TINY, input="once only", background=True)
    await wait_for(lambda: (created.id, "completed") in stack.folded)
    first = await totals(stack)
    job = stack.worker.jobs[-1]
    # the job redelivered after a worker crash runs again and reports again, with other figures
    await stack.worker._run_background(job, "a longer second answer", "stop")
    done = ResponseStatusChanged(response_id=created.id, org_id="org-a", model=TINY, status="completed", seq=2,
                                 prompt_tokens=99, completion_tokens=99)
    await stack.platform.bus.publish(done, source="test/worker")
    await wait_for(lambda: stack.folded.count((created.id, "completed")) >= 3)
    assert await totals(stack) == first
    assert first[2] == 1


async def test_a_gpu_validation_request_is_metered_for_its_org(stack):
    lora_id = stack.loras["funny"]["lora"]["id"]
    for seq, status in ((1, "in_progress"), (2, "completed")):
        await stack.platform.bus.publish(ResponseStatusChanged(
            response_id="resp_validation1", org_id="org-a", model=TINY, status=status, seq=seq, lora_id=lora_id,
            output_text="ok", finish_reason="stop", prompt_tokens=12, completion_tokens=3), source="test/worker")
    await wait_for(lambda: ("resp_validation1", "completed") in stack.folded)
    await wait_for(lambda: True)
    record = await stack.router.usage.get("org-a", "resp_validation1")
    assert (record["kind"], record["lora_id"], record["input_tokens"], record["output_tokens"]) == (
        "validation", lora_id, 12, 3)
    assert await totals(stack, "org-b") == (0, 0, 0)


async def _seed(stack, start: int) -> None:
    from services.inference_router.usage_repo import UsageRecord
    rows = [("r1", "org-a", "key_a", TINY, "lora-1", 0, 10, 1), ("r2", "org-a", "key_a", TINY, None, 30, 20, 2),
            ("r3", "org-a", "key_b", TINY, "lora-1", 3700, 40, 4), ("r4", "org-a", "key_a", "other", None, 7300, 80, 8),
            ("r5", "org-b", "key_z", TINY, "lora-9", 10, 1000, 1000)]
    for rid, org, key, model, lora, offset, tokens_in, tokens_out in rows:
        await stack.router.usage.record(UsageRecord(
            id=rid, org_id=org, api_key_id=key, model=model, lora_id=lora, completion_window="asap", kind="chat",
            input_tokens=tokens_in, output_tokens=tokens_out, latency_seconds=0.1, finished_at=start + offset))


async def test_group_by_and_buckets_in_openai_shape(stack):
    start = 1_700_000_000
    await _seed(stack, start)
    async with openai_client(stack) as api:  # the SDK sends group_by[]=model&group_by[]=lora_id
        page = await api.admin.organization.usage.completions(
            start_time=start, end_time=start + 3 * 3600, bucket_width="1h", group_by=["model", "lora_id"])
    assert page.object == "page" and not page.has_more and page.next_page is None
    assert [(b.start_time, b.end_time) for b in page.data] == [(start + i * 3600, start + (i + 1) * 3600)
                                                               for i in range(3)]
    first = [(r.model, r.model_extra["lora_id"], r.input_tokens, r.num_model_requests, r.api_key_id)
             for r in page.data[0].results]
    assert first == [(TINY, None, 20, 1, None), (TINY, "lora-1", 10, 1, None)]
    assert [(r.model_extra["lora_id"], r.input_tokens) for r in page.data[1].results] == [("lora-1", 40)]
    assert [(r.model, r.output_tokens) for r in page.data[2].results] == [("other", 8)]

    status, by_key = await report(stack, params=[("start_time", str(start)), ("end_time", str(start + 86400)),
                                                 ("group_by", "api_key_id")])
    assert status == 200
    results = by_key["data"][0]["results"]
    assert [(r["api_key_id"], r["input_tokens"], r["model"], r["lora_id"]) for r in results] == [
        ("key_a", 110, None, None), ("key_b", 40, None, None)]
    assert results[0]["object"] == "organization.usage.completions.result" and results[0]["project_id"] is None


async def test_pages_follow_next_page(stack):
    start = 1_700_000_000
    await _seed(stack, start)
    params = {"start_time": str(start), "end_time": str(start + 3 * 3600), "bucket_width": "1h", "limit": "2"}
    _, first = await report(stack, params=params)
    assert first["has_more"] and len(first["data"]) == 2
    _, second = await report(stack, params={**params, "page": first["next_page"]})
    assert not second["has_more"] and [b["start_time"] for b in second["data"]] == [start + 7200]
    assert second["data"][0]["results"][0]["input_tokens"] == 80


async def test_another_orgs_usage_is_never_visible(stack):
    start = 1_700_000_000
    await _seed(stack, start)
    _, page = await report(stack, "org-a", {"start_time": str(start), "group_by": "api_key_id,lora_id"})
    seen = {(r["api_key_id"], r["lora_id"]) for b in page["data"] for r in b["results"]}
    assert ("key_z", "lora-9") not in seen and seen
    _, filtered = await report(stack, "org-a", [("start_time", str(start)), ("lora_ids[]", "lora-9")])
    assert all(b["results"] == [] for b in filtered["data"])
    _, theirs = await report(stack, "org-b", {"start_time": str(start)})
    assert [r["input_tokens"] for b in theirs["data"] for r in b["results"]] == [1000]


@pytest.mark.parametrize(("params", "param"), [
    ({}, "start_time"),
    ({"start_time": "yesterday"}, "start_time"),
    ({"start_time": "-5"}, "start_time"),
    ({"start_time": "9" * 5000}, None),
    ({"start_time": "100", "end_time": "100"}, None),
    ({"start_time": "100", "bucket_width": "2h"}, "bucket_width"),
    ({"start_time": "100", "group_by": "project_id"}, "group_by"),
    ({"start_time": "100", "limit": "0"}, "limit"),
    ({"start_time": "100", "limit": "32"}, None),
    ({"start_time": "100", "page": "page_7"}, "page"),
    ({"start_time": "100", "page": "anything"}, "page"),
    ({"start_time": "100", "surprise": "1"}, "surprise"),
])
async def test_bad_parameters_are_400_in_openai_envelope(stack, params, param):
    status, body = await report(stack, params=params)
    assert status == 400, body
    assert set(body) == {"error"} and body["error"]["type"] == "invalid_request_error"
    if param is not None:
        assert body["error"]["param"].startswith(param)


async def test_repeated_scalar_is_400(stack):
    status, body = await report(stack, params=[("start_time", "1"), ("start_time", "2")])
    assert status == 400 and body["error"]["param"] == "start_time"


async def test_the_cli_prints_usage_grouped_by_lora(stack, capsys):
    from shared.cli.api_client import ApiClient
    from shared.cli.main import parser
    from shared.cli.usage import cmd_usage
    start = 1_700_000_000
    await _seed(stack, start)
    args = parser().parse_args(["usage", "--start", str(start), "--end", str(start + 2 * 86400), "--bucket", "1d",
                                "--group-by", "lora_id"])
    client = ApiClient(stack.url(), stack.keys["org-a"])
    try:
        assert await cmd_usage(client, args) == 0
    finally:
        await client.close()
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["bucket", "(UTC)", "lora_id", "requests", "input_tokens", "output_tokens"]
    assert [line.split()[2:] for line in lines[1:]] == [["-", "2", "100", "10"], ["lora-1", "2", "50", "5"]]
