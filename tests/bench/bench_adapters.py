"""Thousands of adapters per worker: 1,000 rank-8 adapters under Zipf(1.0) popularity vs the same load over 8, and
the same 1,000-adapter load over 3 worker processes with and without adapter-affinity routing.

One worker (its real tiers: a local blob store -> disk -> CPU -> slots, the eviction policy, staging and
prefetch; jobs through the in-process bus) serving bench_engine's model (DeepseekV3 dense, hidden 1024 by
default: nothing is downloaded, the weights come from a fixed seed). 32 clients each send one streamed
request at a time. `many`: 1,000 distinct rank-8 adapters on every Linear (synthetic, saved in PEFT's
safetensors layout), picked with Zipf(1.0). `few`: the same load over 8 adapters, all resident. Same slots
and cache sizes for both. Each phase is warmed up first (caches reach steady state) and then measured.
Prints the throughput of each and `many_over_few`, each tier's hit rate, p50/p99 cold-load seconds per
tier, p99 time to first token for requests whose adapter was cold (in no slot when sent) vs hot.

Then the multi-worker part (affinity_workers.py): the `many` load (same picks, same slots and cache sizes per
worker) through `--workers` worker processes over RabbitMQ, once with affinity routing (a job goes to the worker its
LoRA id hashes to) and once without (any worker takes any job), fresh workers and caches each time. Prints each
configuration's slot, CPU and disk hit rates, how the requests spread over the workers and the throughput;
`affinity_hit_rate` and `no_affinity_hit_rate` are the slot tier's (requests that found their adapter in a slot),
`affinity_over_no_affinity` their ratio. The last line is one JSON object.
Run: `python -m tests.bench.bench_adapters [--requests N] [--affinity-requests N] [--only-affinity]`.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import tempfile
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch

from services.gpu_worker.adapters.adapter_cache import adapter_key
from services.gpu_worker.app import lifecycle
from shared.bus.inprocess import InProcessBus
from shared.contracts import topology as t
from shared.contracts.messages import AdapterRef
from shared.logging import configure as configure_logging
from shared.stores.local_blobs import LocalBlobStore
from tests.bench.adapters_workload import (
    ENTRY,
    TIERS,
    BenchWorker,
    Shape,
    Tally,
    bench_worker,
    drive,
    job_for,
    lru_hit_rate,
    simulated_hit_rates,
    store_adapters,
    streamed,
    zipf_picks,
)
from tests.bench.affinity_workers import measure_affinity
from tests.bench.bench_engine import bench_config, build
from tests.bench.common import CPU_NOTE, emit, exit_on_sigterm, percentile, print_table


# -- the load --------------------------------------------------------------------------------------
async def one_request(bus, worker: BenchWorker, ref: AdapterRef, number: int, shape: Shape) -> None:
    cold = worker.engine.host.engine.slots.slot_of(adapter_key(ref)) is None
    first, tokens = await streamed(bus, job_for(ref, number, shape))
    worker.tally.ttft["cold" if cold else "hot"].append(first)
    worker.tally.tokens += tokens


async def drive_worker(bus, worker: BenchWorker, refs: list[AdapterRef], picks: list[int], shape: Shape) -> float:
    """Send `picks` from the shape's concurrent clients; returns the seconds it took."""
    return await drive(picks, shape.clients,
                       lambda number, index: one_request(bus, worker, refs[index], number, shape))


@contextlib.asynccontextmanager
async def serving(root: Path, blobs: LocalBlobStore, shape: Shape, adapter_bytes: int):
    bus = InProcessBus(t.topology([ENTRY.slug]))
    await bus.start()
    worker = bench_worker(bus, blobs, root, shape, adapter_bytes)
    running = lifecycle(worker, 2 * shape.clients, None)(None)
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
        await drive_worker(load.bus, load.worker, refs, list(range(load.population)), shape)
    await drive_worker(load.bus, load.worker, refs, load.picks[: shape.warmup], shape)
    load.worker.tally = Tally()


async def measure_round(load: Load, refs, shape: Shape, index: int) -> None:
    per_round = shape.requests // shape.rounds
    start = shape.warmup + index * per_round
    tokens_before = load.worker.tally.tokens
    load.seconds.append(await drive_worker(load.bus, load.worker, refs, load.picks[start:start + per_round], shape))
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
        "hidden_size": shape.hidden, "slots": shape.slots, "cpu_tier_adapters": shape.cpu_adapters,
        "disk_tier_adapters": shape.disk_adapters, "adapters": shape.adapters, "clients": shape.clients,
        "requests": shape.requests, "warmup": shape.warmup, "rounds": shape.rounds, "max_tokens": shape.max_tokens,
    }


def print_lru_theory(picks: list[int], refs: list[AdapterRef], shape: Shape) -> None:
    """What plain LRU makes of the multi-worker part's trace: every worker seeing every adapter vs each its share."""
    spread = lru_hit_rate(picks, shape.slots, counted_from=shape.warmup)
    split = lru_hit_rate(picks, shape.slots, lambda index: zlib.crc32(refs[index].lora_id.encode()) % shape.workers,
                         counted_from=shape.warmup)
    print(f"LRU replay of these picks, {shape.slots} slots per worker: any worker takes any job {spread:.3f}, "
          f"adapters split over {shape.workers} workers by a hash {split:.3f} ({split / max(spread, 1e-9):.2f}x)")


async def run_async(shape: Shape, only_affinity: bool = False) -> dict:
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
              f"{shape.max_tokens} tokens per request", flush=True)
        results = {}
        if not only_affinity:
            print(f"one worker: {shape.warmup} warm-up + {shape.requests} measured requests per load", flush=True)
            results |= summary(*await compare(root, blobs, refs, shape, adapter_file_bytes), shape)
        started = time.perf_counter()
        picks = zipf_picks(shape.warmup + shape.affinity_requests, shape.adapters, seed=2)  # the `many` trace
        results |= await measure_affinity(root, refs, picks, shape, adapter_file_bytes)
        print_lru_theory(picks, refs, shape)
        print(f"multi-worker part: {time.perf_counter() - started:.0f} s", flush=True)
    return results


@pytest.mark.bench
def test_adapters_bench():
    results = asyncio.run(run_async(Shape(adapters=200, cpu_adapters=32, disk_adapters=100, slots=8, clients=8,
                                          requests=160, warmup=32, rounds=2, affinity_requests=48)))
    assert {"many_over_few", "cold_load_p50_s", "cold_ttft_p99_s", "hot_ttft_p99_s", "affinity_hit_rate",
            "no_affinity_hit_rate", "affinity_cpu_hit_rate", "affinity_over_no_affinity"} <= results.keys()
    assert 0 < results["no_affinity_hit_rate"] < 1  # the workers' tallies came back and counted every request


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    defaults = Shape()
    for name in ("hidden", "layers", "adapters", "slots", "cpu_adapters", "disk_adapters", "clients", "requests",
                 "warmup", "rounds", "max_tokens", "threads", "workers", "affinity_requests"):
        parser.add_argument(f"--{name.replace('_', '-')}", type=int, default=getattr(defaults, name))
    parser.add_argument("--only-affinity", action="store_true", help="only the multi-worker part")
    args = vars(parser.parse_args())
    only_affinity = args.pop("only_affinity")
    configure_logging(production=False, level="WARNING")  # a readable log: no line per job
    exit_on_sigterm()  # `timeout` in make bench: the finally blocks stop the worker processes and drop the vhost
    emit(asyncio.run(run_async(Shape(**args), only_affinity)))


if __name__ == "__main__":
    main()
