"""Multi-LoRA decode throughput: a batch of rows with distinct adapters vs the same batch with none, vs PEFT.

A DeepseekV3-family model big enough that arithmetic dominates (dense layers, hidden 1024 by
default), 16 rows each with its own rank-8 adapter on every Linear (attention and MLP). Prints
decode tokens/s for each way of adding the LoRA terms, for the base model, and for the naive
baseline (PEFT: `set_adapter`, then one request at a time), then the ratios; the last line is one
JSON object. Figures are medians over interleaved rounds, ratios the median of each round's
ratio, so other load on the machine skews them less. Run: `python -m tests.bench.bench_engine [--hidden 2048]` or `pytest -m bench tests/bench`.
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import DeepseekV3Config, DeepseekV3ForCausalLM

from services.gpu_worker.adapters.adapter_files import load_adapter
from services.gpu_worker.engines.torch_engine.lora_ops import STRATEGIES
from services.gpu_worker.engines.torch_engine.model_host import EngineOptions, host_engine
from services.gpu_worker.engines.torch_engine.sampling import SamplingSpec
from services.gpu_worker.engines.torch_engine.sequence import GenerationRequest
from services.gpu_worker.engines.torch_engine.targets import discover_targets
from services.gpu_worker.models.tokenizer import build_tokenizer

LINEARS = ["q_a_proj", "q_b_proj", "kv_a_proj_with_mqa", "kv_b_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
PREFIX = "base_model.model.model."


def bench_config(hidden: int, layers: int) -> DeepseekV3Config:
    heads = hidden // 128
    return DeepseekV3Config(
        vocab_size=4096, hidden_size=hidden, intermediate_size=hidden * 11 // 4, moe_intermediate_size=hidden // 4,
        num_hidden_layers=layers, first_k_dense_replace=layers,  # every layer dense: every weight is a Linear
        num_attention_heads=heads, num_key_value_heads=heads, n_routed_experts=8, num_experts_per_tok=2, n_group=2,
        topk_group=1, q_lora_rank=hidden // 2, kv_lora_rank=hidden // 4, qk_rope_head_dim=32, qk_nope_head_dim=64,
        v_head_dim=64, max_position_embeddings=512, initializer_range=0.02, bos_token_id=256, eos_token_id=257,
        pad_token_id=258)


def build(config: DeepseekV3Config, seed: int = 0) -> DeepseekV3ForCausalLM:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return DeepseekV3ForCausalLM(config).eval()


def make_adapters(config, count: int, rank: int, root: Path) -> PeftModel:
    """`count` random adapters on every Linear, saved as PEFT would, and a PEFT model holding them all."""
    model = build(config)
    # PEFT 0.21 remaps gate/up/down_proj of a deepseek_v3 model to its fused experts, which leaves the dense
    # MLP without LoRA; under another model_type it adapts the dense Linears as asked
    model.config.model_type = "deepseek_v3_dense_bench"
    lora = LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=LINEARS, init_lora_weights=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        peft = get_peft_model(model, lora, adapter_name="a0")
        for index in range(1, count):
            peft.add_adapter(f"a{index}", lora)
    for index in range(count):
        peft.save_pretrained(root, selected_adapters=[f"a{index}"])
    return peft.eval()


def adapter_dir(root: Path, index: int) -> Path:
    return root / f"a{index}"  # PEFT saves each named adapter in its own folder


def prompts(count: int, length: int) -> list[list[int]]:
    generator = torch.Generator().manual_seed(1)
    return [torch.randint(0, 256, (length,), generator=generator).tolist() for _ in range(count)]


def engine_tok_s(engine, rows: list[list[int]], adapters: list, steps: int) -> float:
    """Decode tokens/s of one batch: every row prefilled, then `steps` decode steps timed."""
    for index, (prompt, weights) in enumerate(zip(rows, adapters)):
        engine.submit(GenerationRequest(f"r{index}", prompt, max_tokens=steps + 3, sampling=SamplingSpec(0.0),
                                        adapter_key=None if weights is None else f"a{index}", adapter=weights))
    engine.step()  # prefill + first decode
    engine.step()  # warm-up
    started = time.perf_counter()
    for _ in range(steps):
        engine.step()
    elapsed = time.perf_counter() - started
    while engine.has_work():
        engine.step()
    return len(rows) * steps / elapsed


def interleaved_rounds(measures: dict, rounds: int) -> dict[str, list[float]]:
    """Each measure once per round, interleaved: load from other processes hits neighbours alike."""
    figures: dict[str, list[float]] = {name: [] for name in measures}
    for _ in range(rounds):
        for name, measure in measures.items():
            figures[name].append(measure())
    return figures


def paired_ratio(numerators: list[float], denominators: list[float]) -> float:
    """Median over rounds of the ratio of two figures measured side by side."""
    return statistics.median(n / d for n, d in zip(numerators, denominators))


def naive_tok_s(peft: PeftModel, rows: list[list[int]], steps: int, requests: int) -> float:
    """One request at a time: set its adapter, generate."""
    generated, elapsed = 0, 0.0
    with torch.inference_mode():
        for index in range(requests):
            peft.set_adapter(f"a{index}")
            ids = torch.tensor([rows[index]])
            started = time.perf_counter()
            out = peft.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=steps,
                                min_new_tokens=steps, do_sample=False, pad_token_id=258)
            elapsed += time.perf_counter() - started
            generated += out.shape[1] - ids.shape[1]
    return generated / elapsed


@dataclass
class Setup:
    engine: object
    weights: list
    peft: PeftModel
    rows: list[list[int]]


def prepare(hidden: int, layers: int, batch: int, rank: int) -> Setup:
    config = bench_config(hidden, layers)
    with tempfile.TemporaryDirectory() as tmp:
        peft = make_adapters(config, batch, rank, Path(tmp))
        model = build(config)
        targets = discover_targets(model)
        weights = [load_adapter(adapter_dir(Path(tmp), i) / "adapter_config.json",
                                adapter_dir(Path(tmp), i) / "adapter_model.safetensors",
                                targets, [PREFIX], rank, 1 << 34) for i in range(batch)]
    engine = host_engine(model, build_tokenizer(), EngineOptions(num_slots=batch, max_batch=batch, max_len=512))
    engine.stop_token_ids = set()  # random weights: decode the full length every time
    params = sum(p.numel() for p in model.parameters())
    print(f"model: DeepseekV3 dense, hidden {hidden}, {layers} layers, intermediate {config.intermediate_size}, "
          f"{params / 1e6:.1f}M parameters; torch threads {torch.get_num_threads()}; batch {batch}, "
          f"{batch} distinct rank-{rank} adapters on every Linear", flush=True)
    return Setup(engine, weights, peft, prompts(batch, 16))


def measure_engine(setup: Setup, steps: int, rounds: int) -> dict:
    engine, batch = setup.engine, len(setup.rows)

    def mixed(name):
        def measure():
            engine.runner.context.strategy = STRATEGIES[name]
            return engine_tok_s(engine, setup.rows, setup.weights, steps)
        return measure

    measures = {f"mixed_{name}_tok_s": mixed(name) for name in STRATEGIES}
    measures["base_tok_s"] = lambda: engine_tok_s(engine, setup.rows, [None] * batch, steps)
    figures = interleaved_rounds(measures, rounds)
    results = {name: statistics.median(values) for name, values in figures.items()}
    for name in STRATEGIES:
        ratio = paired_ratio(figures[f"mixed_{name}_tok_s"], figures["base_tok_s"])
        results[f"mixed_{name}_over_base"] = ratio
        print(f"mixed ({name}): {results[f'mixed_{name}_tok_s']:.1f} tok/s, {ratio:.2f} of base", flush=True)
    print(f"base (no adapters): {results['base_tok_s']:.1f} tok/s", flush=True)
    return results


def run(hidden: int = 1024, layers: int = 4, batch: int = 16, rank: int = 8, steps: int = 8, rounds: int = 5,
        naive_requests: int = 4, threads: int | None = 1, strategy: str = "gathered") -> dict:
    if threads:
        torch.set_num_threads(threads)
    setup = prepare(hidden, layers, batch, rank)
    results = measure_engine(setup, steps, rounds)
    results["naive_tok_s"] = naive_tok_s(setup.peft, setup.rows, steps, naive_requests)
    print(f"naive (PEFT, set_adapter per request, one at a time; {naive_requests} requests): "
          f"{results['naive_tok_s']:.1f} tok/s", flush=True)
    results |= {
        "hidden_size": hidden, "threads": torch.get_num_threads(), "decode_steps": steps, "rounds": rounds,
        "strategy": strategy, "mixed_tok_s": results[f"mixed_{strategy}_tok_s"],
        "mixed_over_base": results[f"mixed_{strategy}_over_base"],
        "fastest_strategy": max(STRATEGIES, key=lambda name: results[f"mixed_{name}_over_base"]),
    }
    results["mixed_over_naive"] = results["mixed_tok_s"] / results["naive_tok_s"]
    print(f"mixed/base {results['mixed_over_base']:.2f}  mixed/naive {results['mixed_over_naive']:.2f}")
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in results.items()}))
    return results


@pytest.mark.bench
def test_engine_bench():
    results = run()
    assert {"mixed_tok_s", "base_tok_s", "naive_tok_s", "mixed_over_base", "mixed_over_naive"} <= results.keys()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch threads, pinned (0: torch's default)")
    args = parser.parse_args()
    run(hidden=args.hidden, layers=args.layers, steps=args.steps, rounds=args.rounds, threads=args.threads or None)


if __name__ == "__main__":
    main()
