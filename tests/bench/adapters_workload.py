"""The adapters benchmark's workload: its shape, synthetic adapters in PEFT's layout stored in the blob store,
Zipf picks, request lengths, per-tier tallies, and the eviction policy replayed against plain LRU."""
from __future__ import annotations

import json
import random
from collections import OrderedDict
from dataclasses import dataclass, field

import torch
from safetensors.torch import save

from services.gpu_worker.adapters.eviction import EvictionPolicy
from services.gpu_worker.engines.torch_engine.slots import SlotTable
from services.gpu_worker.models.tiny_model import TINY_MODEL_ID
from shared.contracts.messages import AdapterRef
from shared.stores.local_blobs import LocalBlobStore
from tests.bench.bench_engine import LINEARS, PREFIX, bench_config, build

TIERS = ("disk", "cpu", "slot")  # disk: blob -> disk, cpu: disk -> CPU, slot: CPU -> slot


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


@dataclass
class Tally:
    hits: dict = field(default_factory=lambda: {tier: [0, 0] for tier in TIERS})  # [hits, misses]
    loads: dict = field(default_factory=lambda: {tier: [] for tier in TIERS})  # seconds per miss
    ttft: dict = field(default_factory=lambda: {"cold": [], "hot": []})
    tokens: int = 0

    def record(self, tier: str, hit: bool, seconds: float) -> None:
        self.hits[tier][0 if hit else 1] += 1
        if not hit:
            self.loads[tier].append(seconds)

    def hit_rate(self, tier: str) -> float:
        hits, misses = self.hits[tier]
        return hits / max(1, hits + misses)


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
    lru: OrderedDict[int, None] = OrderedDict()
    lru_hits = policy_hits = 0
    for index in picks:
        clock[0] += 1.0 / per_second
        policy_hits += not policy_slots.place(str(index)).loaded
        lru_hits += index in lru
        lru[index] = None
        lru.move_to_end(index)
        if len(lru) > capacity:
            lru.popitem(last=False)
    return lru_hits / len(picks), policy_hits / len(picks)


def zipf_picks(count: int, population: int, seed: int) -> list[int]:
    weights = [1.0 / rank for rank in range(1, population + 1)]  # Zipf(1.0): adapter i has rank i + 1
    return random.Random(seed).choices(range(population), weights=weights, k=count)


def length_of(number: int, shape: Shape) -> int:
    """Lengths from half to one and a half times max_tokens (seeded per request number, alike for both loads):
    equal lengths would have all 32 clients finish and resubmit in lock-step, leaving the batch idle between."""
    return random.Random(number).randint(max(1, shape.max_tokens // 2), shape.max_tokens * 3 // 2)
