"""Load: requests per second, p50/p99 latency and errors for `GET /v1/loras/{name}` and short chat completions
with a LoRA, before and during a worker restart, over the real multi-process topology.

Every service and a tiny-model worker each its own process (tests/e2e/topology.py) over real RabbitMQ
(a private vhost) and moto's S3 server; a phrase adapter trained here is uploaded, registered and
validated. A load generator on loopback (aiohttp, a fixed number of concurrent clients per kind, each
sending its next request when the last one ends) runs for a bounded time: a warm-up, the "before"
window, then one window per worker restart (by default a graceful one, SIGTERM, then a crash, SIGKILL),
each opening a little before the worker process is stopped, spanning its start and readiness, and
closing some seconds after.
A request belongs to the window it started in; an error is any non-200 answer or failed connection.
The last line printed is one JSON object (the "before" figures under the issue's keys, the restart
windows' prefixed `restart_term_` / `restart_kill_`, `errors` over every window).

Run: `python -m tests.bench.bench_load [--before-s 20] [--get-clients 8] [--chat-clients 4]`.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import tempfile
import time
from collections import Counter
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
from tests.e2e.topology import Topology

LORA_NAME = "bench-load-lora"
WORKER = "gpu-worker"
LEAD_S = 2.0  # a restart window opens this long before the worker stops: requests then in flight are in it


@dataclass(frozen=True)
class Outcome:
    kind: str
    started: float
    latency_s: float
    error: str | None  # None: a 200 answer


@dataclass
class Load:
    outcomes: list[Outcome] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def client(self, kind: str, send) -> None:
        while not self.stop.is_set():
            started = time.monotonic()
            try:
                error = await send()
            except (TimeoutError, aiohttp.ClientError) as exc:
                error = type(exc).__name__
            self.outcomes.append(Outcome(kind, started, time.monotonic() - started, error))


async def error_of(response: aiohttp.ClientResponse) -> str | None:
    if response.status == 200:
        await response.read()
        return None
    try:
        code = (await response.json()).get("error", {}).get("code")
    except (aiohttp.ContentTypeError, ValueError, AttributeError):
        code = None
    return f"{response.status} {code}"


def senders(session: aiohttp.ClientSession, topo: Topology, key: str, max_tokens: int) -> dict:
    lora_url = f"{topo.url('registry')}/v1/loras/{LORA_NAME}"
    chat_url = f"{topo.url('inference-router')}/v1/chat/completions"
    chat_body = {"model": TINY_MODEL, "messages": [{"role": "user", "content": PROMPT}], "max_tokens": max_tokens,
                 "temperature": 0, "metadata": {"lora": LORA_NAME, "completion_window": "priority"}}

    async def get_lora() -> str | None:
        async with session.get(lora_url, headers=auth(key)) as response:
            return await error_of(response)

    async def chat() -> str | None:
        async with session.post(chat_url, json=chat_body, headers=auth(key)) as response:
            return await error_of(response)

    return {"get_lora": get_lora, "chat": chat}


async def restart_worker(topo: Topology, how: str) -> tuple[float, float]:
    """Stop the worker (SIGKILL or SIGTERM), start it again; (stopped_at, ready_at) on the monotonic clock."""
    if how not in ("kill", "term"):
        raise ValueError(f"unknown restart {how!r}: kill or term")
    if how == "kill":
        await asyncio.to_thread(topo.kill, WORKER)
    else:
        process = topo.processes.pop(WORKER)
        process.terminate()
        await asyncio.to_thread(process.wait, 60)
    stopped = time.monotonic()
    topo.start(WORKER)
    await asyncio.to_thread(topo.wait_ready, WORKER, 180)
    return stopped, time.monotonic()


async def drive(topo: Topology, key: str, args) -> tuple[list[Outcome], dict[str, tuple[float, float]],
                                                        dict[str, float]]:
    load = Load()
    # the router answers a job no worker takes after its sync timeout (120 s by default): wait longer
    timeout = aiohttp.ClientTimeout(total=180)
    connector = aiohttp.TCPConnector(limit=args.get_clients + args.chat_clients)
    windows, downtimes = {}, {}
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        send = senders(session, topo, key, args.max_tokens)
        clients = [asyncio.create_task(load.client(kind, send[kind]))
                   for kind, count in (("get_lora", args.get_clients), ("chat", args.chat_clients))
                   for _ in range(count)]
        await asyncio.sleep(args.warmup_s)
        opened = time.monotonic()
        await asyncio.sleep(args.before_s)
        windows["before"] = (opened, time.monotonic())
        for how in args.restarts.split(","):
            opened = time.monotonic()
            await asyncio.sleep(LEAD_S)
            print(f"restarting the worker ({how}) ...", flush=True)
            stopped, ready = await restart_worker(topo, how)
            await asyncio.sleep(args.after_ready_s)
            windows[f"restart_{how}"] = (opened, time.monotonic())
            downtimes[how] = ready - stopped
        load.stop.set()
        await asyncio.gather(*clients)
    return load.outcomes, windows, downtimes


def figures(outcomes: list[Outcome], window: tuple[float, float], kind: str) -> dict:
    start, end = window
    mine = [o for o in outcomes if o.kind == kind and start <= o.started < end]
    good = [o.latency_s * 1000 for o in mine if o.error is None]
    return {"requests": len(mine), "rps": len(good) / (end - start), "p50_ms": percentile(good, 50),
            "p99_ms": percentile(good, 99), "max_ms": max((o.latency_s * 1000 for o in mine), default=0.0),
            "errors": len(mine) - len(good),
            "error_kinds": Counter(o.error for o in mine if o.error)}


def report(outcomes: list[Outcome], windows: dict, downtimes: dict[str, float], args) -> dict:
    table = {(phase, kind): figures(outcomes, window, kind)
             for phase, window in windows.items() for kind in ("get_lora", "chat")}
    print_table(["window", "s", "request", "clients", "sent", "ok/s", "p50 ms", "p99 ms", "max ms (errors too)",
                 "errors"],
                [[phase, windows[phase][1] - windows[phase][0], kind,
                  args.get_clients if kind == "get_lora" else args.chat_clients, f["requests"], f["rps"],
                  f["p50_ms"], f["p99_ms"], f["max_ms"], f["errors"]] for (phase, kind), f in table.items()])
    print("p50/p99 are over the 200 answers; max is over every request")
    for (phase, kind), f in table.items():
        for error, count in f["error_kinds"].items():
            print(f"  {phase} {kind}: {count} x {error}")
    for how, seconds in downtimes.items():
        print(f"worker down ({how}: stopped -> ready again): {seconds:.1f} s")
    result = {}
    for (phase, kind), f in table.items():
        prefix = "" if phase == "before" else f"{phase}_"
        result |= {f"{prefix}{kind}_rps": f["rps"], f"{prefix}{kind}_p50_ms": f["p50_ms"],
                   f"{prefix}{kind}_p99_ms": f["p99_ms"], f"{prefix}{kind}_errors": f["errors"]}
    result |= {"errors": sum(f["errors"] for f in table.values()),
               "requests": sum(f["requests"] for f in table.values())}
    result["error_rate"] = result["errors"] / max(result["requests"], 1)
    result |= {f"worker_down_{how}_s": seconds for how, seconds in downtimes.items()}
    return emit(result)


def run(args) -> dict:
    print(f"load: {args.get_clients} clients on GET /v1/loras/{{name}} and {args.chat_clients} on chat completions "
          f"with a LoRA (max_tokens {args.max_tokens}), {args.before_s} s before worker restarts ({args.restarts}) and through each; "
          f"{CPU_NOTE}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-load-") as tmp:
        root = Path(tmp)
        adapter_dir = train_adapter(root / "adapter")
        with topology(root) as (topo, key):
            lora = register_lora(topo, key, adapter_dir, LORA_NAME)
            print(f"LoRA {lora['name']}: {lora['status']}", flush=True)
            outcomes, windows, downtimes = asyncio.run(drive(topo, key, args))
    return report(outcomes, windows, downtimes, args)


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--get-clients", type=int, default=8)
    parser.add_argument("--chat-clients", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=8)
    parser.add_argument("--warmup-s", type=float, default=3.0)
    parser.add_argument("--before-s", type=float, default=20.0)
    parser.add_argument("--after-ready-s", type=float, default=5.0,
                        help="the restart window closes this long after the new worker is ready")
    parser.add_argument("--restarts", default="term,kill",
                        help="worker restarts in order, each its own window: term (SIGTERM) and/or kill (SIGKILL)")
    return parser


@pytest.mark.bench
def test_load_bench():
    result = run(parser().parse_args(["--before-s", "5", "--after-ready-s", "2"]))
    assert {"get_lora_rps", "get_lora_p99_ms", "chat_rps", "chat_p99_ms", "errors"} <= result.keys()


def main() -> None:
    args = parser().parse_args()
    exit_on_sigterm()
    with contextlib.suppress(KeyboardInterrupt):
        run(args)


if __name__ == "__main__":
    main()
