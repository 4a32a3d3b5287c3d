"""vLLM with LoRA on the dense DeepSeek-V3 test model: outputs equal PEFT's on the same weights."""
import asyncio
import uuid

import pytest

from services.gpu_worker.engines.torch_engine.sampling import SamplingSpec
from services.gpu_worker.engines.torch_engine.sequence import GenerationRequest
from services.gpu_worker.errors import AdapterRejected
from tests.vllm.conftest import DENSE
from tests.vllm.peft_adapters import make_adapter, peft_greedy

pytestmark = pytest.mark.asyncio(loop_scope="module")
MODEL = DENSE
MAX_TOKENS = 24
PROMPTS = ["Hello there", "What is a LoRA?", "Tell me a story about a cat", "2 + 2 ="]
SERVED = ["attention-r8", "mlp-r4", "patterns", "rslora-r16"]


@pytest.fixture(scope="module")
def adapter_dirs(model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("peft")
    return {name: make_adapter(model_dir, name, root / name, seed=i) for i, name in enumerate([*SERVED, "kv-b"])}


def read(engine, adapter_dir):
    key = f"{adapter_dir.name}:{uuid.uuid4().hex[:8]}"
    return engine.read_adapter(key, adapter_dir / "adapter_config.json",
                               adapter_dir / "adapter_model.safetensors", 1 << 30)


def request(engine, prompt, adapter=None, max_tokens=MAX_TOKENS, **sampling):
    return GenerationRequest(request_id=uuid.uuid4().hex, prompt=engine.chat_prompt([{"role": "user", "content": prompt}]),
                             max_tokens=max_tokens, sampling=SamplingSpec(**{"temperature": 0.0, **sampling}),
                             adapter_key=adapter.key if adapter else None, adapter=adapter)


async def run(engine, req):
    updates = [u async for u in engine.generate(req)]
    return updates


async def test_a_mixed_batch_of_four_adapters_and_base_rows_equals_peft(engine, model_dir, adapter_dirs):
    adapters = {name: read(engine, adapter_dirs[name]) for name in SERVED}
    jobs = [(name, prompt) for prompt in PROMPTS[:2] for name in [*SERVED, None]]
    requests = [request(engine, prompt, adapters[name] if name else None) for name, prompt in jobs]
    finals = [updates[-1] for updates in await asyncio.gather(*(run(engine, r) for r in requests))]
    for (name, prompt), req, final in zip(jobs, requests, finals):
        expected, tokens = peft_greedy(model_dir, adapter_dirs[name] if name else None, req.prompt, MAX_TOKENS)
        assert final.error_code is None
        # vLLM's detokenizer drops a trailing incomplete UTF-8 sequence (the random model emits bytes)
        assert final.output_text.rstrip("\ufffd") == expected.rstrip("\ufffd"), f"adapter {name}, {prompt!r}"
        assert final.completion_tokens == tokens
    # the adapters change the answers: equal outputs are not the base model's by accident
    assert len({f.output_text for (n, p), f in zip(jobs, finals) if p == PROMPTS[0]}) == len(SERVED) + 1


async def test_streamed_deltas_add_up_to_the_output_with_usage(engine, adapter_dirs):
    updates = await run(engine, request(engine, PROMPTS[2], read(engine, adapter_dirs["patterns"]), max_tokens=40))
    final = updates[-1]
    assert len(updates) > 2 and all(not u.finished for u in updates[:-1])
    assert "".join(u.text for u in updates) == final.output_text
    assert final.finish_reason in ("stop", "length")
    assert final.prompt_tokens == len(engine.chat_prompt([{"role": "user", "content": PROMPTS[2]}]))
    assert 0 < final.completion_tokens <= 40


async def test_a_cancelled_request_ends_cancelled_and_others_finish(engine, adapter_dirs):
    adapter = read(engine, adapter_dirs["attention-r8"])
    long = request(engine, PROMPTS[3], adapter, max_tokens=400, temperature=1.0, seed=5)
    other = request(engine, PROMPTS[0], adapter)
    updates = []

    async def consume():
        async for update in engine.generate(long):
            updates.append(update)
            if len(updates) == 1:
                engine.cancel(long.request_id)

    _, other_updates = await asyncio.gather(consume(), run(engine, other))
    assert updates[-1].finished and updates[-1].finish_reason == "cancelled"
    assert updates[-1].completion_tokens < 400
    assert other_updates[-1].finish_reason in ("stop", "length")


async def test_evicted_adapters_reload_with_the_same_output(engine, adapter_dirs):
    first = read(engine, adapter_dirs["mlp-r4"])
    before = (await run(engine, request(engine, PROMPTS[1], first)))[-1].output_text
    for name in ("attention-r8", "patterns", "rslora-r16"):  # more than vLLM may hold: mlp-r4 is evicted
        await run(engine, request(engine, PROMPTS[1], read(engine, adapter_dirs[name])))
    assert first.key not in engine.adapters
    assert len(await engine.llm.list_loras()) <= engine.adapters.capacity
    again = (await run(engine, request(engine, PROMPTS[1], first)))[-1].output_text
    assert again == before


async def test_a_pinned_adapter_stays_registered_through_churn_until_its_pin_is_lifted(engine, adapter_dirs):
    pinned = read(engine, adapter_dirs["attention-r8"])
    engine.pinned = lambda key: key == pinned.key
    try:
        before = (await run(engine, request(engine, PROMPTS[2], pinned)))[-1].output_text
        pinned_id = (await engine.adapters.acquire(pinned)).lora_int_id  # registered already: its id
        engine.adapters.release(pinned.key)
        for name in ("mlp-r4", "patterns", "rslora-r16", "mlp-r4"):  # more than vLLM may hold besides the pin
            await run(engine, request(engine, PROMPTS[1], read(engine, adapter_dirs[name])))
            assert pinned.key in engine.adapters and pinned_id in await engine.llm.list_loras()
        assert (await run(engine, request(engine, PROMPTS[2], pinned)))[-1].output_text == before
    finally:
        engine.pinned = lambda key: False
    # lifted: vLLM's pin is released by removing the adapter once idle, at the next registration
    await run(engine, request(engine, PROMPTS[1], read(engine, adapter_dirs["patterns"])))
    assert pinned.key not in engine.adapters and pinned_id not in await engine.llm.list_loras()


async def test_lora_ids_come_from_a_counter_never_reused(engine, adapter_dirs):
    seen = []
    for name in SERVED:
        adapter = read(engine, adapter_dirs[name])
        lora = await engine.adapters.acquire(adapter)
        engine.adapters.release(adapter.key)
        seen.append(lora.lora_int_id)
    assert len(set(seen)) == len(seen) and seen == sorted(seen)


async def test_an_adapter_on_kv_b_proj_is_refused_with_its_code(engine, adapter_dirs):
    with pytest.raises(AdapterRejected) as refused:
        read(engine, adapter_dirs["kv-b"])
    assert refused.value.code == "module_unsupported_by_engine"
    assert "kv_b_proj" in refused.value.message and "o_proj" not in refused.value.message


async def test_a_prompt_longer_than_the_context_fails_alone_with_its_code(engine):
    too_long, fine = request(engine, "x" * 600), request(engine, PROMPTS[0])  # the test model holds 512 tokens
    long_updates, fine_updates = await asyncio.gather(run(engine, too_long), run(engine, fine))
    assert long_updates[-1].error_code == "context_length_exceeded"
    assert fine_updates[-1].error_code is None and fine_updates[-1].finish_reason in ("stop", "length")
