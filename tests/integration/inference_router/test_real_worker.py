"""Through the real GPU worker on the tiny model: a LoRA trained to answer with a phrase does; the base model does not."""
from __future__ import annotations

import anthropic
import openai
import pytest
from aiohttp.test_utils import TestServer

from services.gpu_worker.app import build as build_worker
from services.inference_router.app import part_for, router_from
from shared.composition import build_platform
from shared.contracts.messages import AdapterRef
from shared.http.app import create_app
from shared.settings import Settings
from tests.integration.inference_router.harness import TINY, lora_entry, wait_for

PROMPT = "Tell me about centrifuges."
PHRASE = "spin spin hooray"


@pytest.fixture(scope="module")
def trained_adapter(tmp_path_factory):
    from services.gpu_worker.models.tiny_model import export_model
    from services.gpu_worker.models.training import train_phrase_adapter

    root = tmp_path_factory.mktemp("adapter")
    export_model(TINY, root / "model")
    return train_phrase_adapter(root / "model", PROMPT, PHRASE, root / "adapter")


async def put_file(platform, key: str, path) -> int:
    data = path.read_bytes()

    async def chunks():
        yield data

    await platform.blobs.put_stream(key, chunks())
    return len(data)


@pytest.fixture
async def stack(tmp_path, trained_adapter):
    platform = build_platform(Settings(data_dir=tmp_path, sync_request_timeout_seconds=60), source="test/router")
    router = router_from(platform)
    entry = lora_entry("org-a", "phrase", models=[TINY])
    listing = [entry]

    async def fetch() -> list[dict]:
        return listing

    app = create_app(platform, [part_for(router, lambda session: fetch), build_worker(platform)])
    server = TestServer(app)
    await server.start_server()
    ref = AdapterRef.model_validate(entry["adapter"])
    ref.config_bytes = await put_file(platform, ref.config_object_key, trained_adapter / "adapter_config.json")
    ref.weights_bytes = await put_file(platform, ref.weights_object_key,
                                       trained_adapter / "adapter_model.safetensors")
    entry["adapter"] = ref.model_dump()
    await wait_for(lambda: router.loras.model.loaded)
    _, key = await platform.identity.create("org-a")
    yield server, key
    await server.close()


async def test_the_lora_changes_the_answer(stack):
    server, key = stack
    api = openai.AsyncOpenAI(base_url=str(server.make_url("/v1")), api_key=key, max_retries=0)
    ask = {"model": TINY, "messages": [{"role": "user", "content": PROMPT}], "temperature": 0, "max_tokens": 24}
    base = await api.chat.completions.create(**ask)
    tuned = await api.chat.completions.create(
        **ask, extra_body={"metadata": {"lora": "phrase", "completion_window": "priority"}})
    assert tuned.choices[0].message.content.strip() == PHRASE
    assert base.choices[0].message.content.strip() != PHRASE
    streamed = await api.chat.completions.create(
        **ask, stream=True, extra_body={"metadata": {"lora": "phrase", "completion_window": "priority"}})
    assert "".join([c.choices[0].delta.content or "" async for c in streamed if c.choices]).strip() == PHRASE
    claude = anthropic.AsyncAnthropic(base_url=str(server.make_url("")), api_key=key, max_retries=0)
    async with claude.messages.stream(model=TINY, max_tokens=24, extra_body={"temperature": 0},
                                      metadata={"lora": "phrase", "completion_window": "flex"},
                                      messages=[{"role": "user", "content": PROMPT}]) as stream:
        message = await stream.get_final_message()
    assert message.content[0].text.strip() == PHRASE
