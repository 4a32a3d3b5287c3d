"""The adapters benchmark's workload and worker: its shape, synthetic adapters in PEFT's layout stored in the blob
store, Zipf picks, streamed requests from concurrent clients, the worker as deployed serving bench_engine's model
with its tiers tallied (one in-process, or several as processes: affinity_workers.py), and the eviction policy
replayed against plain LRU."""
from __future__ import annotations

import asyncio
import json
import random
import time
from collections import OrderedDict, defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from safetensors.torch import save

from services.gpu_worker.adapters.eviction import EvictionPolicy
from services.gpu_worker.engines.torch_engine.model_host import EngineOptions, ModelHost, host_engine
from services.gpu_worker.engines.torch_engine.serving import SlotPolicy, TorchEngine
from services.gpu_worker.engines.torch_engine.slots import SlotTable
from services.gpu_worker.engines.torch_engine.targets import discover_targets
from services.gpu_worker.metrics import PrometheusObserver
from services.gpu_worker.models.tiny_model import TINY_MODEL_ID
from services.gpu_worker.models.tokenizer import build_tokenizer
from services.gpu_worker.worker import Worker, WorkerOptions
from shared.catalogue.catalogue import load_catalogue
from shared.contracts.messages import AdapterRef, ChatMessage, GenerateResponse, ResponseDelta, SamplingParams
from shared.stores.local_blobs import LocalBlobStore
from tests.bench.bench_engine import LINEARS, PREFIX, bench_config, build

TIERS = ("disk", "cpu", "slot")  # disk: blob -> disk, cpu: disk -> CPU, slot: CPU -> slot
ENTRY = load_catalogue().get(TINY_MODEL_ID)  # its id, slug and adapter rules; the model itself is bench_engine's


@dataclass
class Shape:
    hidden: int = 1024
    layers: int = 4
    rank: int = 8
    adapters: int = 1000
    few: int = 8
    slots: int = 32
    cpu_adapters: int = 128
    disk_adapters: int = 512
    clients: int = 32
    requests: int = 960  # measured, per load
    warmup: int = 320
    rounds: int = 12
    max_tokens: int = 16  # the mean: each request's is drawn from [max_tokens / 2, 1.5 max_tokens]
    threads: int = 1
    workers: int = 3  # the multi-worker part: worker processes over RabbitMQ
    affinity_requests: int = 960  # measured, per configuration (with and without affinity), after `warmup`


@dataclass
class Tally:
    # [hits, misses]; the slot tier counts requests (resident or not when the engine took them), as its metric does
    hits: dict = field(default_factory=lambda: {tier: [0, 0] for tier in TIERS})
    loads: dict = field(default_factory=lambda: {tier: [] for tier in TIERS})  # seconds per load
    ttft: dict = field(default_factory=lambda: {"cold": [], "hot": []})
    tokens: int = 0

    def count(self, tier: str, hit: bool) -> None:
        self.hits[tier][0 if hit else 1] += 1

    def record(self, tier: str, hit: bool, seconds: float) -> None:
        self.count(tier, hit)
        if not hit:
            self.loads[tier].append(seconds)

    def hit_rate(self, tier: str) -> float:
        hits, misses = self.hits[tier]
        return hits / max(1, hits + misses)

    @property
    def requests(self) -> int:
        """Requests with an adapter the engine took (every one of this benchmark's)."""
        return sum(self.hits["slot"])

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Tally:
        return cls(**json.loads(text))

    @classmethod
    def merged(cls, tallies: list[Tally]) -> Tally:
        total = cls()
        for tally in tallies:
            for tier in TIERS:
                total.hits[tier] = [a + b for a, b in zip(total.hits[tier], tally.hits[tier])]
                total.loads[tier] += tally.loads[tier]
            for kind in total.ttft:
                total.ttft[kind] += tally.ttft[kind]
            total.tokens += tally.tokens
        return total


# -- the worker -----------------------------------------------------------------------------------
class TalliedObserver(PrometheusObserver):
    def __init__(self, model, slots_in_use, tally_of):
        super().__init__(model, slots_in_use)
        self._tally = tally_of

    def adapter_looked_up(self, resident):
        super().adapter_looked_up(resident)
        self._tally().count("slot", resident)

    def adapter_placed(self, placement, seconds):
        super().adapter_placed(placement, seconds)
        self._tally().loads["slot"].append(seconds)  # one per placement: cold requests may share one


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
        """Count the disk and CPU tiers' hits and timed misses beside their Prometheus metrics (after start)."""
        for tier, owner, hook in (("disk", self.adapters.disk, "_on_fetch"), ("cpu", self.adapters, "_on_load")):
            original = getattr(owner, hook)

            def tapped(hit, seconds, tier=tier, original=original):
                original(hit, seconds)
                self.tally.record(tier, hit, seconds)

            setattr(owner, hook, tapped)


def bench_worker(bus, blobs, cache_dir: Path, shape: Shape, adapter_bytes: int) -> BenchWorker:
    """A worker with the shape's slots, batch and tier sizes (in adapters of `adapter_bytes`)."""
    options = WorkerOptions(engine=EngineOptions(num_slots=shape.slots, max_batch=shape.clients, max_len=512),
                            cache_dir=cache_dir, disk_cache_bytes=shape.disk_adapters * (adapter_bytes + 4096),
                            cpu_cache_bytes=shape.cpu_adapters * adapter_bytes)
    BenchWorker.shape = shape
    worker = BenchWorker(ENTRY, bus, blobs, "bench/gpu-worker", options)
    worker.tally = Tally()
    return worker


# -- adapters ------------------------------------------------------------------------------------
def linear_shapes(shape: Shape) -> dict[str, tuple[int, int]]:
    layer = build(bench_config(shape.hidden, 1)).model.layers[0]
    return {path: (module.out_features, module.in_features) for path, module in layer.named_modules()
            if path.rsplit(".", 1)[-1] in LINEARS}


def synthetic_adapter(index: int, shape: Shape, shapes: dict[str, tuple[int, int]]) -> tuple[bytes, bytes]:
    """What PEFT saves for LoraConfig(r=rank, target_modules=LINEARS): small random factors, a seed each."""
    generator = torch.Generator().manual_seed(10_000 + index)
    tensors = {}
    for layer in range(shape.layers):
        for path, (out_features, in_features) in shapes.items():
            key = f"{PREFIX}layers.{layer}.{path}"
            tensors[f"{key}.lora_A.weight"] = torch.randn(shape.rank, in_features, generator=generator) * 0.02
            tensors[f"{key}.lora_B.weight"] = torch.randn(out_features, shape.rank, generator=generator) * 0.02
    config = {"peft_type": "LORA", "r": shape.rank, "lora_alpha": 2 * shape.rank, "target_modules": LINEARS,
              "base_model_name_or_path": TINY_MODEL_ID}
    return json.dumps(config).encode(), save(tensors, metadata={"format": "pt"})


async def store_adapters(blobs: LocalBlobStore, shape: Shape) -> tuple[list[AdapterRef], int]:
    shapes = linear_shapes(shape)
    refs, weights_bytes = [], 0
    for index in range(shape.adapters):
        config, weights = synthetic_adapter(index, shape, shapes)
        for kind, data in (("config", config), ("weights", weights)):
            async def chunks(data=data):
                yield data

            await blobs.put_stream(f"org-bench/a{index}/{kind}", chunks())
        weights_bytes = len(weights)
        refs.append(AdapterRef(lora_id=f"lora-{index:04d}", name=f"a{index}", config_file_id=f"cfg-{index}",
                               weights_file_id=f"w-{index}", config_object_key=f"org-bench/a{index}/config",
                               weights_object_key=f"org-bench/a{index}/weights", weights_bytes=len(weights),
                               config_bytes=len(config)))
    return refs, weights_bytes


def simulated_hit_rates(picks: list[int], capacity: int, per_second: float) -> tuple[float, float]:
    """Hit rates of plain LRU and of the worker's policy (slots.py, eviction.py) on the same trace, replayed at
    the measured request rate: what the policy adds over the LRU floor, with the engine out of the picture."""
    clock = [0.0]
    policy_slots = SlotTable(capacity, EvictionPolicy(clock=lambda: clock[0]))
    policy_hits = 0
    for index in picks:
        clock[0] += 1.0 / per_second
        policy_hits += not policy_slots.place(str(index)).loaded
    return lru_hit_rate(picks, capacity), policy_hits / len(picks)


def lru_hit_rate(picks: list[int], capacity: int, partition: Callable[[int], int] = lambda index: 0,
                 counted_from: int = 0) -> float:
    """Plain LRU of `capacity` adapters per partition (a worker each: `partition` maps an adapter to its worker);
    the hits of the picks from `counted_from` on (the ones before warm the caches up)."""
    caches: dict[int, OrderedDict[int, None]] = defaultdict(OrderedDict)
    hits = 0
    for number, index in enumerate(picks):
        cache = caches[partition(index)]
        hits += number >= counted_from and index in cache
        cache[index] = None
        cache.move_to_end(index)
        if len(cache) > capacity:
            cache.popitem(last=False)
    return hits / max(1, len(picks) - counted_from)


def zipf_picks(count: int, population: int, seed: int) -> list[int]:
    weights = [1.0 / rank for rank in range(1, population + 1)]  # Zipf(1.0): adapter i has rank i + 1
    return random.Random(seed).choices(range(population), weights=weights, k=count)


# -- the load ----------------------------------------------------------------------------------------
def length_of(number: int, shape: Shape) -> int:
    """Lengths from half to one and a half times max_tokens (seeded per request number, alike for both loads):
    equal lengths would have all 32 clients finish and resubmit in lock-step, leaving the batch idle between."""
    return random.Random(number).randint(max(1, shape.max_tokens // 2), shape.max_tokens * 3 // 2)


def job_for(ref: AdapterRef, number: int, shape: Shape) -> GenerateResponse:
    return GenerateResponse(response_id=f"resp_{number}", org_id="org-bench", model=ENTRY.id, model_slug=ENTRY.slug,
                            messages=[ChatMessage(role="user", content=f"q{number}")],
                            sampling=SamplingParams(max_tokens=length_of(number, shape), temperature=0.0),
                            adapter=ref, stream=True)


async def streamed(bus, job: GenerateResponse) -> tuple[float, int]:
    """Send one streamed request and read it to the end: (seconds to its first token, completion tokens)."""
    started = time.perf_counter()
    stream = await bus.request(job, source="bench/client")
    first, event = None, None
    while event is None or event.type == ResponseDelta.TYPE:
        event = await stream.next(timeout=300)
        first = first if first is not None else time.perf_counter() - started
    await stream.close()
    if event.type != "response.finished":
        raise RuntimeError(f"{job.response_id} failed: {event.data}")
    return first, event.data["completion_tokens"]


async def drive(picks: list[int], clients: int, send: Callable[[int, int], Awaitable[None]]) -> float:
    """`send(number, adapter index)` for each of `picks`, from `clients` concurrent clients; the seconds it took."""
    queue = iter(enumerate(picks))

    async def client():
        for number, index in queue:
            await send(number, index)

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return time.perf_counter() - started
