"""Router overhead: the same short LoRA chat request through the router over real RabbitMQ vs the engine's
in-process API.

Router path: every service and a tiny-model worker each its own process (tests/e2e/topology.py), real
RabbitMQ on a private vhost, moto's S3 server; a phrase adapter trained here (~2 s), uploaded, registered
and validated; then streamed `POST /v1/chat/completions` with `metadata.lora` (HTTP, admission, the bus,
the worker's job handling and its reply stream). Direct path: the same model built in this process by
`load_host` with the worker's options, driven by the worker's own `EngineLoop.generate`, with the same
adapter loaded by `load_adapter` and the same prompt, greedy. Requests alternate between the paths, one
at a time, so both see the same background load. TTFT is the first non-empty text; total is the end of
the stream. Prints p50/p99 of both and the added milliseconds (goal: < 10 ms at p50); the last line is
one JSON object.

Run: `python -m tests.bench.bench_router [--requests 100] [--max-tokens 16]`.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest

from tests.bench.common import (
    CPU_NOTE,
    PROMPT,
    TINY_MODEL,
    auth,
    emit,
    exit_on_sigterm,
    percentile,
    print_table,
    register_lora,
    topology,
    train_adapter,
)

LORA_NAME = "bench-router-lora"
GOAL_ADDED_MS = 10.0


@dataclass
class Samples:
    ttft_ms: list[float] = field(default_factory=list)
    total_ms: list[float] = field(default_factory=list)
    texts: set[str] = field(default_factory=set)

    def add(self, ttft_s: float, total_s: float, text: str) -> None:
        self.ttft_ms.append(ttft_s * 1000)
        self.total_ms.append(total_s * 1000)
        self.texts.add(text)


# -- the router path --------------------------------------------------------------------------
async def router_request(session: aiohttp.ClientSession, url: str, key: str, max_tokens: int
                         ) -> tuple[float, float, str]:
    body = {"model": TINY_MODEL, "messages": [{"role": "user", "content": PROMPT}], "max_tokens": max_tokens,
            "temperature": 0, "stream": True, "metadata": {"lora": LORA_NAME, "completion_window": "priority"}}
    started, first, parts = time.perf_counter(), None, []
    async with session.post(f"{url}/v1/chat/completions", json=body, headers=auth(key)) as response:
        if response.status != 200:
            raise RuntimeError(f"chat completion failed: {response.status} {await response.text()}")
        async for line in response.content:
            data = line.decode().strip().removeprefix("data: ")
            if not line.startswith(b"data: ") or data == "[DONE]":
                continue
            chunk = json.loads(data)
            if "error" in chunk:
                raise RuntimeError(f"stream ended with an error: {chunk['error']}")
            text = "".join(choice["delta"].get("content") or "" for choice in chunk["choices"])
            if text and first is None:
                first = time.perf_counter()
            parts.append(text)
    return first - started, time.perf_counter() - started, "".join(parts)


# -- the direct path: the engine in this process ------------------------------------------------
class DirectEngine:
    """The worker's model, engine and adapter, without HTTP, bus or job handling."""

    def __init__(self, adapter_dir: Path):
        from services.gpu_worker.adapters.adapter_files import load_adapter
        from services.gpu_worker.engines.torch_engine.model_host import EngineOptions, load_host
        from shared.catalogue.catalogue import load_catalogue
        from shared.settings import Settings

        settings, entry = Settings(), load_catalogue().get(TINY_MODEL)
        options = EngineOptions(num_slots=settings.worker_slots, max_batch=settings.worker_max_batch,
                                max_len=entry.architecture.max_position_embeddings)  # as the worker's options_from
        self.host = load_host(entry, options)
        self.weights = load_adapter(adapter_dir / "adapter_config.json", adapter_dir / "adapter_model.safetensors",
                                    self.host.targets, self.host.key_prefixes, entry.max_rank, 16 * 1024**3)
        self.loop = None

    def start(self) -> None:
        from services.gpu_worker.engines.torch_engine.engine_loop import EngineLoop

        self.loop = EngineLoop(self.host.engine)
        self.loop.start()

    async def request(self, max_tokens: int) -> tuple[float, float, str]:
        from services.gpu_worker.engines.torch_engine.sampling import SamplingSpec
        from services.gpu_worker.engines.torch_engine.sequence import GenerationRequest

        started, first, parts = time.perf_counter(), None, []
        request = GenerationRequest(request_id=uuid.uuid4().hex,
                                    prompt=self.host.chat_prompt([{"role": "user", "content": PROMPT}]),
                                    max_tokens=max_tokens, sampling=SamplingSpec(0.0, 1.0, None),
                                    adapter_key="bench-adapter", adapter=self.weights)
        async for update in self.loop.generate(request):
            if update.error_code:
                raise RuntimeError(f"engine failed: {update.error_code} {update.error_message}")
            if update.text and first is None:
                first = time.perf_counter()
            parts.append(update.text)
        return first - started, time.perf_counter() - started, "".join(parts)


# -- the run ----------------------------------------------------------------------------------
async def measure(url: str, key: str, direct: DirectEngine, requests: int, warmup: int, max_tokens: int
                  ) -> tuple[Samples, Samples]:
    direct.start()
    router, engine = Samples(), Samples()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session:
        for index in range(warmup + requests):
            via_router = await router_request(session, url, key, max_tokens)
            via_engine = await direct.request(max_tokens)
            if index >= warmup:  # the first requests load the adapter into each path's caches
                router.add(*via_router)
                engine.add(*via_engine)
    await direct.loop.stop()
    return router, engine


def summary_row(name: str, samples: Samples) -> list[object]:
    return [name, percentile(samples.ttft_ms, 50), percentile(samples.ttft_ms, 99),
            percentile(samples.total_ms, 50), percentile(samples.total_ms, 99)]


def run(requests: int = 100, warmup: int = 5, max_tokens: int = 16) -> dict:
    print(f"router overhead: streamed chat completions with a LoRA, router over RabbitMQ vs the engine in "
          f"process; {requests} requests each, alternating, one at a time; {CPU_NOTE}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-router-") as tmp:
        root = Path(tmp)
        adapter_dir = train_adapter(root / "adapter")
        with topology(root) as (topo, key):
            lora = register_lora(topo, key, adapter_dir, LORA_NAME)
            print(f"LoRA {lora['name']}: {lora['status']}", flush=True)
            direct = DirectEngine(adapter_dir)
            router, engine = asyncio.run(measure(topo.url("inference-router"), key, direct, requests, warmup,
                                                 max_tokens))
    print_table(["path", "TTFT p50 ms", "TTFT p99 ms", "total p50 ms", "total p99 ms"],
                [summary_row("router (HTTP + RabbitMQ + worker)", router),
                 summary_row("engine in process (EngineLoop)", engine)])
    if router.texts != engine.texts:
        print(f"note: the paths answered differently: router {router.texts} vs engine {engine.texts}")
    result = {
        "router_ttft_p50_ms": percentile(router.ttft_ms, 50), "router_ttft_p99_ms": percentile(router.ttft_ms, 99),
        "direct_ttft_p50_ms": percentile(engine.ttft_ms, 50), "direct_ttft_p99_ms": percentile(engine.ttft_ms, 99),
        "router_total_p50_ms": percentile(router.total_ms, 50), "router_total_p99_ms": percentile(router.total_ms, 99),
        "direct_total_p50_ms": percentile(engine.total_ms, 50), "direct_total_p99_ms": percentile(engine.total_ms, 99),
        "requests": requests, "max_tokens": max_tokens, "same_text": router.texts == engine.texts,
    }
    result["added_p50_ms"] = result["router_ttft_p50_ms"] - result["direct_ttft_p50_ms"]
    result["added_total_p50_ms"] = result["router_total_p50_ms"] - result["direct_total_p50_ms"]
    print(f"added at p50: TTFT {result['added_p50_ms']:.1f} ms (goal < {GOAL_ADDED_MS}), "
          f"total {result['added_total_p50_ms']:.1f} ms")
    return emit(result)


@pytest.mark.bench
def test_router_bench():
    result = run(requests=20)
    assert {"router_ttft_p50_ms", "router_ttft_p99_ms", "direct_ttft_p50_ms", "direct_ttft_p99_ms",
            "added_p50_ms"} <= result.keys()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--max-tokens", type=int, default=16)
    args = parser.parse_args()
    exit_on_sigterm()
    run(args.requests, args.warmup, args.max_tokens)


if __name__ == "__main__":
    main()
