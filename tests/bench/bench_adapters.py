"""Thousands of adapters per worker: 1,000 rank-8 adapters under Zipf(1.0) popularity vs the same load over 8.

One worker (its real tiers: a local blob store -> disk -> CPU -> slots, the eviction policy, staging and
prefetch; jobs through the in-process bus) serving bench_engine's model (DeepseekV3 dense, hidden 1024 by
default: nothing is downloaded, the weights come from a fixed seed). 32 clients each send one streamed
request at a time. `many`: 1,000 distinct rank-8 adapters on every Linear (synthetic, saved in PEFT's
safetensors layout), picked with Zipf(1.0). `few`: the same load over 8 adapters, all resident. Same slots
and cache sizes for both. Each phase is warmed up first (caches reach steady state) and then measured.
Prints the throughput of each and `many_over_few`, each tier's hit rate, p50/p99 cold-load seconds per
tier, p99 time to first token for requests whose adapter was cold (in no slot when sent) vs hot; the last
line is one JSON object. The multi-worker affinity part (`affinity_hit_rate`, `no_affinity_hit_rate`) is
not measured here yet: printed as null. Run: `python -m tests.bench.bench_adapters [--requests N]`.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch

from services.gpu_worker.adapters.adapter_cache import adapter_key
from services.gpu_worker.app import lifecycle
from services.gpu_worker.engines.torch_engine.model_host import EngineOptions, ModelHost, host_engine
from services.gpu_worker.engines.torch_engine.serving import SlotPolicy, TorchEngine
from services.gpu_worker.engines.torch_engine.targets import discover_targets
from services.gpu_worker.metrics import PrometheusObserver
from services.gpu_worker.models.tiny_model import TINY_MODEL_ID
from services.gpu_worker.models.tokenizer import build_tokenizer
from services.gpu_worker.worker import Worker, WorkerOptions
from shared.bus.inprocess import InProcessBus
from shared.catalogue.catalogue import load_catalogue
from shared.contracts import topology as t
from shared.contracts.messages import AdapterRef, ChatMessage, GenerateResponse, ResponseDelta, SamplingParams
from shared.logging import configure as configure_logging
from shared.stores.local_blobs import LocalBlobStore
from tests.bench.adapters_workload import (
    TIERS,
    Shape,
    Tally,
    length_of,
    simulated_hit_rates,
    store_adapters,
    zipf_picks,
)
from tests.bench.bench_engine import bench_config, build
from tests.bench.common import CPU_NOTE, emit, percentile, print_table

ENTRY = load_catalogue().get(TINY_MODEL_ID)  # its id, slug and adapter rules; the model itself is bench_engine's


class TalliedObserver(PrometheusObserver):
    def __init__(self, model, slots_in_use, tally_of):
        super().__init__(model, slots_in_use)
        self._tally = tally_of

    def adapter_looked_up(self, resident):
        super().adapter_looked_up(resident)
        if resident:
            self._tally().record("slot", True, 0.0)

    def adapter_placed(self, placement, seconds):
        super().adapter_placed(placement, seconds)
        self._tally().record("slot", False, seconds)


class BenchWorker(Worker):
    """The worker as deployed, serving bench_engine's model instead of the catalogue's."""

    shape: Shape
    tally: Tally

    def _torch_engine(self):
        observer = TalliedObserver(self.entry.id, lambda: self.engine.slots_in_use, lambda: self.tally)
        policy = SlotPolicy(self.residency, self.options.usage_half_life, self.options.slot_wait_bound)
        return TorchEngine(self.entry, self.options.engine, observer, policy, build_host=self._host)

    def _host(self, entry, options, observer) -> ModelHost:
        model = build(bench_config(self.shape.hidden, self.shape.layers))
        tokenizer = build_tokenizer()
        targets = discover_targets(model)
        engine = host_engine(model, tokenizer, options, observer)
        engine.stop_token_ids = set()  # random weights: every request decodes its full length
        engine.vocab_limit = 128  # ASCII bytes only: every token is a text delta
        return ModelHost(entry, tokenizer, targets, engine)

    def tap_tiers(self) -> None:
        """Count the disk and CPU tiers' hits and timed misses beside their Prometheus metrics."""
        for tier, owner, hook in (("disk", self.adapters.disk, "_on_fetch"), ("cpu", self.adapters, "_on_load")):
            original = getattr(owner, hook)

            def tapped(hit, seconds, tier=tier, original=original):
                original(hit, seconds)
                self.tally.record(tier, hit, seconds)

            setattr(owner, hook, tapped)


# -- the load --------------------------------------------------------------------------------------
async def one_request(bus, worker: BenchWorker, ref: AdapterRef, number: int, shape: Shape) -> None:
    cold = worker.engine.host.engine.slots.slot_of(adapter_key(ref)) is None
    job = GenerateResponse(response_id=f"resp_{number}", org_id="org-bench", model=ENTRY.id, model_slug=ENTRY.slug,
                           messages=[ChatMessage(role="user", content=f"q{number}")],
                           sampling=SamplingParams(max_tokens=length_of(number, shape), temperature=0.0), adapter=ref,
                           stream=True)
    started = time.perf_counter()
    stream = await bus.request(job, source="bench/client")
    first, event = None, None
    while event is None or event.type == ResponseDelta.TYPE:
        event = await stream.next(timeout=300)
        first = first if first is not None else time.perf_counter() - started
    await stream.close()
    if event.type != "response.finished":
        raise RuntimeError(f"request {number} failed: {event.data}")
    worker.tally.ttft["cold" if cold else "hot"].append(first)
    worker.tally.tokens += event.data["completion_tokens"]


async def drive(bus, worker: BenchWorker, refs: list[AdapterRef], picks: list[int], shape: Shape) -> float:
    """Send `picks` from `clients` concurrent clients; returns the seconds it took."""
    queue = iter(enumerate(picks))

    async def client():
        for number, index in queue:
            await one_request(bus, worker, refs[index], number, shape)

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(shape.clients)))
    return time.perf_counter() - started


@contextlib.asynccontextmanager
async def serving(root: Path, blobs: LocalBlobStore, shape: Shape, adapter_bytes: int):
    bus = InProcessBus(t.topology([ENTRY.slug]))
    await bus.start()
    options = WorkerOptions(engine=EngineOptions(num_slots=shape.slots, max_batch=shape.clients, max_len=512),
                            cache_dir=root, disk_cache_bytes=shape.disk_adapters * (adapter_bytes + 4096),
                            cpu_cache_bytes=shape.cpu_adapters * adapter_bytes)
    BenchWorker.shape = shape
    worker = BenchWorker(ENTRY, bus, blobs, "bench/gpu-worker", options)
    worker.tally = Tally()
    running = lifecycle(worker, prefetch=2 * shape.clients)(None)
    await running.__anext__()
    worker.tap_tiers()
    try:
        yield bus, worker
    finally:
        with contextlib.suppress(StopAsyncIteration):
            await running.__anext__()
        await bus.close()


@dataclass
class Load:
    name: str
    population: int
    bus: object
    worker: BenchWorker
    picks: list[int]
    seconds: list[float] = field(default_factory=list)  # per round
    tokens: list[int] = field(default_factory=list)

    @property
    def tok_s(self) -> float:
        return sum(self.tokens) / sum(self.seconds)


async def warm_up(load: Load, refs, shape: Shape) -> None:
    if load.population <= shape.slots:  # `few`: every adapter resident before the clock starts
        await drive(load.bus, load.worker, refs, list(range(load.population)), shape)
    await drive(load.bus, load.worker, refs, load.picks[: shape.warmup], shape)
    load.worker.tally = Tally()


async def measure_round(load: Load, refs, shape: Shape, index: int) -> None:
    per_round = shape.requests // shape.rounds
    start = shape.warmup + index * per_round
    tokens_before = load.worker.tally.tokens
    load.seconds.append(await drive(load.bus, load.worker, refs, load.picks[start:start + per_round], shape))
    load.tokens.append(load.worker.tally.tokens - tokens_before)


async def compare(root: Path, blobs, refs, shape: Shape, adapter_bytes: int) -> tuple[Load, Load]:
    """Both workers up at once; rounds of each interleaved, so other load on the machine hits both alike."""
    async with serving(root / "few", blobs, shape, adapter_bytes) as few_serving, \
            serving(root / "many", blobs, shape, adapter_bytes) as many_serving:
        count = shape.warmup + shape.requests
        few = Load("few", shape.few, *few_serving, zipf_picks(count, shape.few, seed=1))
        many = Load("many", shape.adapters, *many_serving, zipf_picks(count, shape.adapters, seed=2))
        for load in (few, many):
            started = time.perf_counter()
            await warm_up(load, refs, shape)
            print(f"{load.name}: warmed up in {time.perf_counter() - started:.1f} s", flush=True)
        for index in range(shape.rounds):
            for load in (few, many):
                await measure_round(load, refs, shape, index)
            print(f"round {index + 1}: few {few.tokens[-1] / few.seconds[-1]:.0f} tok/s, "
                  f"many {many.tokens[-1] / many.seconds[-1]:.0f} tok/s", flush=True)
    return few, many


def summary(few: Load, many: Load, shape: Shape) -> dict:
    tally: Tally = many.worker.tally
    rows = []
    for load in (few, many):
        t_ = load.worker.tally
        rows.append([load.name, load.tok_s, *(t_.hit_rate(tier) for tier in reversed(TIERS)),
                     percentile(t_.ttft["hot"], 99), percentile(t_.ttft["cold"], 99), len(t_.ttft["cold"])])
    print_table(["load", "tok/s", "slot hit", "cpu hit", "disk hit", "hot TTFT p99 s", "cold TTFT p99 s",
                 "cold requests"], rows)
    print_table(["tier (many)", "loads", "p50 s", "p99 s"],
                [[label, len(tally.loads[tier]), percentile(tally.loads[tier], 50), percentile(tally.loads[tier], 99)]
                 for tier, label in zip(TIERS, ("blob->disk", "disk->CPU", "CPU->slot"))])
    ratios = [(m_tok / m_s) / (f_tok / f_s) for m_tok, m_s, f_tok, f_s in
              zip(many.tokens, many.seconds, few.tokens, few.seconds)]
    print(f"many/few per round: {', '.join(f'{r:.2f}' for r in ratios)} (median {statistics.median(ratios):.2f})")
    rate = len(tally.ttft["cold"] + tally.ttft["hot"]) / sum(many.seconds)
    simulated = {tier: simulated_hit_rates(many.picks, size, rate)
                 for tier, size in (("slot", shape.slots), ("cpu", shape.cpu_adapters))}
    for tier, (lru, policy) in simulated.items():
        print(f"{tier} tier replayed on the many trace at {rate:.1f} req/s: LRU hit rate {lru:.3f}, "
              f"the worker's policy {policy:.3f} ({policy / lru:.2f}x)")
    few_ttft = few.worker.tally.ttft
    return {
        "many_over_few": statistics.median(ratios), "many_over_few_min": min(ratios),
        "many_over_few_max": max(ratios), "many_tok_s": many.tok_s, "few_tok_s": few.tok_s,
        "cold_load_p50_s": percentile(tally.loads["cpu"], 50) + percentile(tally.loads["slot"], 50),
        **{f"{tier}_load_p{q}_s": percentile(tally.loads[tier], q) for tier in TIERS for q in (50, 99)},
        **{f"{tier}_hit_rate": tally.hit_rate(tier) for tier in TIERS},
        "cold_ttft_p99_s": percentile(tally.ttft["cold"], 99), "hot_ttft_p99_s": percentile(tally.ttft["hot"], 99),
        "few_ttft_p99_s": percentile(few_ttft["hot"] + few_ttft["cold"], 99),
        **{f"{tier}_policy_over_lru": policy / lru for tier, (lru, policy) in simulated.items()},
        # the multi-worker part (3 workers over RabbitMQ, with and without affinity routing) fills these
        "affinity_hit_rate": None, "no_affinity_hit_rate": None,
        "hidden_size": shape.hidden, "slots": shape.slots, "cpu_tier_adapters": shape.cpu_adapters,
        "disk_tier_adapters": shape.disk_adapters, "adapters": shape.adapters, "clients": shape.clients,
        "requests": shape.requests, "warmup": shape.warmup, "rounds": shape.rounds, "max_tokens": shape.max_tokens,
    }


async def run_async(shape: Shape) -> dict:
    torch.set_num_threads(shape.threads)
    with tempfile.TemporaryDirectory(prefix="bench-adapters-") as tmp:
        root = Path(tmp)
        blobs = LocalBlobStore(root / "blobs")
        await blobs.start()
        started = time.perf_counter()
        refs, adapter_file_bytes = await store_adapters(blobs, shape)
        params = sum(p.numel() for p in build(bench_config(shape.hidden, shape.layers)).parameters())
        print(f"model: DeepseekV3 dense, hidden {shape.hidden}, {shape.layers} layers, {params / 1e6:.1f}M parameters; "
              f"torch threads {shape.threads}; {CPU_NOTE}", flush=True)
        print(f"{shape.adapters} rank-{shape.rank} adapters on every Linear, {adapter_file_bytes / 2**20:.2f} MiB each, "
              f"stored in {time.perf_counter() - started:.1f} s; {shape.slots} slots, CPU tier {shape.cpu_adapters} "
              f"adapters, disk tier {shape.disk_adapters}; {shape.clients} clients, batch {shape.clients}, "
              f"{shape.warmup} warm-up + {shape.requests} measured requests per load, {shape.max_tokens} tokens each",
              flush=True)
        few, many = await compare(root, blobs, refs, shape, adapter_file_bytes)
    return summary(few, many, shape)


@pytest.mark.bench
def test_adapters_bench():
    results = asyncio.run(run_async(Shape(adapters=200, cpu_adapters=32, disk_adapters=100, slots=8, clients=8,
                                          requests=160, warmup=80, rounds=2)))
    assert {"many_over_few", "cold_load_p50_s", "cold_ttft_p99_s", "hot_ttft_p99_s", "affinity_hit_rate",
            "no_affinity_hit_rate"} <= results.keys()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    defaults = Shape()
    for name in ("hidden", "layers", "adapters", "slots", "cpu_adapters", "disk_adapters", "clients", "requests",
                 "warmup", "rounds", "max_tokens", "threads"):
        parser.add_argument(f"--{name.replace('_', '-')}", type=int, default=getattr(defaults, name))
    args = parser.parse_args()
    shape = Shape(**{k: v for k, v in vars(args).items()})
    configure_logging(production=False, level="WARNING")  # a readable log: no line per job
    emit(asyncio.run(run_async(shape)))


if __name__ == "__main__":
    main()
