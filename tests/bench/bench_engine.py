"""Multi-LoRA decode throughput: a batch of rows with distinct adapters vs the same batch with none, vs PEFT.

A DeepseekV3-family model big enough that arithmetic dominates (dense layers, hidden 1024 by default),
16 rows each with its own rank-8 adapter on every Linear (attention and MLP), run by the strategy the
worker runs (`EngineOptions().strategy`). Every case is an engine decoding its own batch without end
(all engines over the same weight tensors); a round times `--steps` decode steps of each case, the cases'
steps interleaved one by one (base, mixed, ..., then back), and a case's ratio is the median over rounds
of base time / its time, printed with its spread, so that load from other processes, which hits
neighbouring steps alike, skews it less.

Cases: the 16 rank-8 adapters with rows out of the bank's entry order (as in a worker that has run a
while) and in it; one rank-64 adapter among 15 rank-8 ones, and all 16 rows at rank 64 (what padding every
adapter to the largest rank would cost); an MoE model (routed experts, router and attention adapted, as
PEFT's `all-linear` saves them). And the naive baseline: PEFT, `set_adapter`, one request at a time (one
request a round). The wall-clock ratios are the figures; the same in this thread's CPU time is printed for
the main one (it leaves out the time other processes took the core). The last line is one JSON object.
Run: `python -m tests.bench.bench_engine [--hidden 2048] [--rounds 40] [--strategies] [--no-moe]` or
`pytest -m bench tests/bench`.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import pytest
import torch
from peft import PeftModel

from services.gpu_worker.engines.torch_engine.lora_ops import STRATEGIES
from services.gpu_worker.engines.torch_engine.model_host import EngineOptions
from tests.bench.engine_cases import (  # noqa: F401 -- LINEARS, PREFIX, bench_config, build: bench_adapters' too
    LINEARS,
    PREFIX,
    RunningBatch,
    Twins,
    adapters_for,
    bench_config,
    build,
    prompts,
)

BATCH = 16


def spread(ratios: list[float]) -> dict[str, float]:
    ordered = sorted(ratios)
    quartiles = statistics.quantiles(ordered, n=4) if len(ordered) > 1 else ordered * 3
    return {"median": statistics.median(ordered), "q1": quartiles[0], "q3": quartiles[2],
            "min": ordered[0], "max": ordered[-1]}


def dense_cases(hidden: int, layers: int, strategies: list[str]) -> tuple[dict[str, RunningBatch], PeftModel, int]:
    model = build(bench_config(hidden, layers))
    twin = Twins(model)
    rank8, peft = adapters_for(model, BATCH, 8)
    rank64, _ = adapters_for(model, 1, 64)
    keyed = [(f"a{i}", w) for i, w in enumerate(rank8)]
    cases = {
        "base": RunningBatch(twin(), [None] * BATCH),
        "mixed": RunningBatch(twin(), keyed),
        "mixed_in_entry_order": RunningBatch(twin(), keyed, entry_order="forward"),
        "rank64_in_rank8": RunningBatch(twin(), keyed[:-1] + [("r64", rank64[0])]),
        "all_rank64": RunningBatch(twin(), [(f"r64-{i}", rank64[0]) for i in range(BATCH)]),
    }
    for name in strategies:  # another strategy on the mixed case's adapters
        cases[f"mixed_{name}"] = RunningBatch(twin(), keyed, strategy=name)
    return cases, peft, sum(p.numel() for p in model.parameters())


def moe_cases(hidden: int, layers: int) -> dict[str, RunningBatch]:
    model = build(bench_config(hidden, layers, moe=True))
    twin = Twins(model)
    weights, _ = adapters_for(model, BATCH, 8)
    return {"moe_base": RunningBatch(twin(), [None] * BATCH),
            "moe_mixed": RunningBatch(twin(), [(f"m{i}", w) for i, w in enumerate(weights)])}


def interleaved_rounds(cases: dict[str, RunningBatch], rounds: int, steps: int,
                       naive: Naive | None = None) -> dict[str, list[tuple]]:
    """A round: `steps` decode steps of every case, interleaved step by step (one step of each case in turn,
    the order reversed every other turn); per case, its steps' seconds summed (wall, CPU). Then one request
    of the naive baseline, if any (its seconds a token, under "naive")."""
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in cases} | {"naive": []}
    names = list(cases)
    for _ in range(rounds):
        for case in cases.values():
            case.ready(steps)
        spent = {name: [0.0, 0.0] for name in names}
        for turn in range(steps):
            for name in names if turn % 2 == 0 else reversed(names):
                wall, cpu = cases[name].timed_step()
                spent[name][0] += wall
                spent[name][1] += cpu
        for name in names:
            times[name].append(tuple(spent[name]))
        if naive is not None:
            times["naive"].append((naive.request_seconds() / naive.tokens,))
    return times


def ratios(times: dict[str, list[tuple]], numerator: str, denominator: str, clock: int = 0) -> dict[str, float]:
    """Per round, `denominator`'s throughput over `numerator`'s: numerator time / denominator time."""
    return spread([n[clock] / d[clock] for n, d in zip(times[numerator], times[denominator])])


class Naive:
    """The naive baseline: PEFT serving one request at a time (`set_adapter`, then `generate`)."""

    def __init__(self, peft: PeftModel, tokens: int = 8):
        self.peft, self.tokens, self.rows, self.served = peft, tokens, prompts(BATCH, 16), 0

    def request_seconds(self) -> float:
        """Seconds for the next request's `tokens` tokens (its adapter set, its prompt prefilled, generated)."""
        index = self.served % BATCH
        self.served += 1
        ids = torch.tensor([self.rows[index]])
        with torch.inference_mode():
            started = time.perf_counter()
            self.peft.set_adapter(f"a{index}")
            self.peft.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=self.tokens,
                               min_new_tokens=self.tokens, do_sample=False, pad_token_id=258)
            return time.perf_counter() - started


def describe(name: str, figures: dict[str, float], what: str) -> None:
    print(f"{name} ({what}): median {figures['median']:.3f}, interquartile {figures['q1']:.3f}-{figures['q3']:.3f}, "
          f"range {figures['min']:.3f}-{figures['max']:.3f}", flush=True)


def run(hidden: int = 1024, layers: int = 4, steps: int = 4, rounds: int = 40, threads: int | None = 1,
        moe: bool = True, strategies: bool = False) -> dict:
    if threads:
        torch.set_num_threads(threads)
    strategy = EngineOptions().strategy
    others = sorted(set(STRATEGIES) - {strategy}) if strategies else []
    cases, peft, params = dense_cases(hidden, layers, others)
    if moe:
        cases |= moe_cases(hidden, layers)
    assert cases["mixed"].strategy is STRATEGIES[strategy]
    print(f"model: DeepseekV3 dense, hidden {hidden}, {layers} layers, {params / 1e6:.1f}M parameters; torch threads "
          f"{torch.get_num_threads()}; batch {BATCH}; strategy {strategy!r} (EngineOptions().strategy, the worker's); "
          f"{rounds} rounds of {steps} decode steps a case", flush=True)
    times = interleaved_rounds(cases, rounds, steps, Naive(peft))
    # a batch case's round: BATCH·steps tokens; the naive baseline's: seconds a token
    times["naive"] = [(seconds * BATCH * steps,) for (seconds,) in times["naive"]]
    tok_s = {name: statistics.median(BATCH * steps / t[0] for t in series) for name, series in times.items()}
    results: dict = {"hidden_size": hidden, "threads": torch.get_num_threads(), "strategy": strategy,
                     "rounds": rounds, "decode_steps": steps}
    results |= {f"{name}_tok_s": value for name, value in tok_s.items()}
    figures = {
        "mixed_over_base": (ratios(times, "base", "mixed"), "16 distinct rank-8 adapters, rows out of entry order"),
        "mixed_over_base_cpu": (ratios(times, "base", "mixed", clock=1), "the same in this thread's CPU time"),
        "mixed_in_entry_order_over_base": (ratios(times, "base", "mixed_in_entry_order"), "rows in entry order"),
        "rank64_in_rank8_over_rank8": (ratios(times, "mixed", "rank64_in_rank8"),
                                       "15 rank-8 + 1 rank-64 vs 16 rank-8"),
        "all_rank64_over_rank8": (ratios(times, "mixed", "all_rank64"),
                                  "16 rank-64 vs 16 rank-8: padding every adapter to one rank-64 adapter's rank"),
    }
    if moe:
        figures["moe_mixed_over_base"] = (ratios(times, "moe_base", "moe_mixed"),
                                          "MoE: 16 adapters on attention, routed experts and router")
    for name in (n for n in cases if n.startswith("mixed_") and n != "mixed_in_entry_order"):
        figures[f"{name}_over_base"] = (ratios(times, "base", name), "another strategy")
    for name, (figure, what) in figures.items():
        describe(name, figure, what)
        results[name] = figure["median"]
        results[f"{name}_spread"] = [figure["q1"], figure["q3"]]
    naive = ratios(times, "naive", "mixed")
    describe("mixed_over_naive", naive, "vs PEFT one request at a time: set_adapter, 8 tokens, a request a round")
    results["mixed_over_naive"], results["mixed_over_naive_spread"] = naive["median"], [naive["q1"], naive["q3"]]
    print(f"tok/s (medians): base {tok_s['base']:.1f}, mixed {tok_s['mixed']:.1f}, naive {tok_s['naive']:.1f}",
          flush=True)
    print(json.dumps({k: _rounded(v) for k, v in results.items()}))
    return results


def _rounded(value):
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return round(value, 3) if isinstance(value, float) else value


@pytest.mark.bench
def test_engine_bench():
    results = run(rounds=10)
    assert {"mixed_over_base", "rank64_in_rank8_over_rank8", "moe_mixed_over_base", "mixed_over_naive"} <= results.keys()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--steps", type=int, default=4, help="decode steps a case a round")
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--threads", type=int, default=1, help="torch threads, pinned (0: torch's default)")
    parser.add_argument("--no-moe", action="store_true", help="skip the MoE model")
    parser.add_argument("--strategies", action="store_true", help="also measure the other strategies")
    args = parser.parse_args()
    run(hidden=args.hidden, layers=args.layers, steps=args.steps, rounds=args.rounds, threads=args.threads or None,
        moe=not args.no_moe, strategies=args.strategies)


if __name__ == "__main__":
    main()
