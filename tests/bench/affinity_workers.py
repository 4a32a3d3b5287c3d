"""bench_adapters' multi-worker part: the same Zipf(1.0) load through worker processes over RabbitMQ, with and
without adapter-affinity routing.

Each worker process is the deployed worker on bench_engine's model (adapters_workload.BenchWorker, its own cache
directory, every worker reading the one blob directory the bench stored the adapters in) on a RabbitBus, consuming
the model's shared inference queue and, with affinity, a seat of the model's affinity ring (services/gpu_worker/app.py's
lifecycle with the deployed settings' wait; services/gpu_worker/affinity.py). The bench process plays the router:
RabbitBus.request sends each job to the model's consistent-hash exchange keyed by its LoRA id when affinity is on,
else to the shared queue. Each configuration gets a fresh vhost, fresh workers and empty caches, and the same picks.

`python -m tests.bench.affinity_workers worker ...` is one worker process: it writes "ready" to --status once it
consumes, on SIGUSR1 (the warm-up is over) zeroes its tally and writes "reset", and on SIGTERM writes its tally as
JSON to --out and exits. It also exits once its parent is gone, so a killed bench leaves no worker behind. With
--after it takes its seat only once that file exists (the previous worker's status): workers that start together
could otherwise both take the lowest free seat and share it.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from services.gpu_worker.affinity import SeatOptions
from services.gpu_worker.app import lifecycle
from shared.bus.rabbitmq import RabbitBus
from shared.contracts import topology as t
from shared.contracts.messages import AdapterRef
from shared.logging import configure as configure_logging
from shared.settings import Settings
from shared.stores.local_blobs import LocalBlobStore
from tests.bench.adapters_workload import ENTRY, Shape, Tally, bench_worker, drive, job_for, streamed
from tests.bench.common import print_table
from tests.fixtures.rabbit import private_vhost

REPO = Path(__file__).resolve().parents[2]
# what a deployed worker uses (shared/settings.py), so the bench measures the routing as shipped
AFFINITY_WAIT_MS = round(Settings.model_fields["affinity_wait_seconds"].default * 1000)
WORKER_SHAPE = ("hidden", "layers", "slots", "cpu_adapters", "disk_adapters", "clients", "threads")
STARTUP_SECONDS = 300  # three processes importing torch and building the model on two shared CPUs
STOP_SECONDS = 60


# -- one worker process ----------------------------------------------------------------------------
def seat_options(shape: Shape) -> SeatOptions:
    """As services/gpu_worker/app.py's seat_options makes them: at most a batch waiting for the worker."""
    return SeatOptions(wait_ms=AFFINITY_WAIT_MS, max_ready=shape.clients)


def seat_queues(shape: Shape) -> list[str]:
    """The seats `shape.workers` workers taking turns sit in: the lowest ones."""
    return [t.affinity_queue(ENTRY.slug, seat, wait_ms=AFFINITY_WAIT_MS, max_ready=shape.clients).name
            for seat in range(shape.workers)]


async def turn(after: Path | None) -> None:
    while after is not None and not after.exists():
        await asyncio.sleep(0.1)


async def exit_when_orphaned(parent: int) -> None:
    """SIGTERM to itself once the bench is gone: a clean stop once serving, else (still starting) the default end."""
    while os.getppid() == parent:
        await asyncio.sleep(1.0)
    os.kill(os.getpid(), signal.SIGTERM)


async def serve(args: argparse.Namespace, shape: Shape) -> None:
    bus = RabbitBus(args.amqp, t.topology([ENTRY.slug], adapter_affinity=args.affinity),
                    connection_name=f"bench-worker-{os.getpid()}")
    watchdog = asyncio.ensure_future(exit_when_orphaned(args.parent))
    await bus.start()
    blobs = LocalBlobStore(args.blobs)
    await blobs.start()
    worker = bench_worker(bus, blobs, args.cache, shape, args.adapter_bytes)
    running = lifecycle(worker, 2 * shape.clients, seat_options(shape) if args.affinity else None)(None)
    await turn(args.after)
    await running.__anext__()
    try:
        worker.tap_tiers()
        loop, stopped = asyncio.get_running_loop(), asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stopped.set)
        loop.add_signal_handler(signal.SIGUSR1, lambda: (setattr(worker, "tally", Tally()),
                                                         args.status.write_text("reset")))
        args.status.write_text("ready")
        await stopped.wait()
        watchdog.cancel()
        args.out.write_text(worker.tally.to_json())  # before the drain: nothing is in flight by now
    finally:
        with contextlib.suppress(StopAsyncIteration):
            await running.__anext__()
        await bus.close()


def worker_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description="one bench worker process over RabbitMQ")
    parser.add_argument("role", choices=["worker"])
    for name in ("amqp", "blobs", "cache", "status", "out"):
        parser.add_argument(f"--{name}", required=True, type=str if name == "amqp" else Path)
    parser.add_argument("--affinity", action=argparse.BooleanOptionalAction, required=True)
    parser.add_argument("--after", type=Path, help="start consuming once this file exists")
    parser.add_argument("--parent", type=int, required=True, help="the bench's pid: gone, the worker stops")
    parser.add_argument("--adapter-bytes", type=int, required=True)
    for name in WORKER_SHAPE:
        parser.add_argument(f"--{name.replace('_', '-')}", type=int, default=getattr(Shape(), name))
    args = parser.parse_args(argv)
    shape = Shape(**{name: getattr(args, name) for name in WORKER_SHAPE})
    torch.set_num_threads(shape.threads)
    configure_logging(production=False, level="WARNING")
    asyncio.run(serve(args, shape))


# -- the processes, from the bench -----------------------------------------------------------------
class WorkerProcesses:
    def __init__(self, root: Path):
        self.root = root
        self.processes: list[subprocess.Popen] = []

    def start(self, url: str, blobs: Path, shape: Shape, adapter_bytes: int, affinity: bool) -> None:
        self.root.mkdir(parents=True)
        sized = [f"--{name.replace('_', '-')}={getattr(shape, name)}" for name in WORKER_SHAPE]
        env = {**os.environ, "OMP_NUM_THREADS": str(shape.threads), "MKL_NUM_THREADS": str(shape.threads)}
        for n in range(shape.workers):
            command = [sys.executable, "-m", "tests.bench.affinity_workers", "worker", f"--amqp={url}",
                       f"--blobs={blobs}", f"--cache={self.root / f'cache-{n}'}", f"--status={self._file(n, 'status')}",
                       f"--out={self._file(n, 'json')}", f"--adapter-bytes={adapter_bytes}", f"--parent={os.getpid()}",
                       "--affinity" if affinity else "--no-affinity", *sized]
            if n > 0:
                command.append(f"--after={self._file(n - 1, 'status')}")
            with self._file(n, "log").open("w") as log:
                self.processes.append(subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=log))

    def _file(self, n: int, suffix: str) -> Path:
        return self.root / f"worker-{n}.{suffix}"

    async def until(self, status: str, seconds: float) -> None:
        """Until every worker wrote `status`; raises with a log's tail when one exits or time runs out."""
        deadline = time.monotonic() + seconds
        for n, process in enumerate(self.processes):
            status_file = self._file(n, "status")
            while not (status_file.exists() and status_file.read_text() == status):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"worker {n} did not get to {status!r}: {self._tail(n)}")
                await asyncio.sleep(0.1)

    async def reset(self) -> None:
        for process in self.processes:
            process.send_signal(signal.SIGUSR1)
        await self.until("reset", 30)

    async def stop(self) -> list[Tally]:
        for process in self.processes:
            process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_SECONDS
        while any(p.poll() is None for p in self.processes) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        tallies = []
        for n in range(len(self.processes)):
            if not self._file(n, "json").exists():
                raise RuntimeError(f"worker {n} wrote no tally: {self._tail(n)}")
            tallies.append(Tally.from_json(self._file(n, "json").read_text()))
        return tallies

    def kill(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
            process.wait()

    def _tail(self, n: int) -> str:
        return self._file(n, "log").read_text()[-2000:]


@contextlib.contextmanager
def worker_processes(root: Path, *start_args) -> Iterator[WorkerProcesses]:
    workers = WorkerProcesses(root)
    try:
        workers.start(*start_args)
        yield workers
    finally:
        workers.kill()  # the ones that did not stop: none is left behind, whatever failed


# -- one configuration -----------------------------------------------------------------------------
@dataclass
class Run:
    name: str
    tallies: list[Tally]  # per worker, measured requests only
    seconds: float
    tokens: int

    @property
    def total(self) -> Tally:
        return Tally.merged(self.tallies)


async def check_seats(bus: RabbitBus, shape: Shape) -> None:
    """Each worker sits in a seat of its own: a shared seat would split its adapters over two workers."""
    consumers = [await bus.consumers(queue) for queue in seat_queues(shape)]
    if consumers != [1] * shape.workers:
        await bus.close()
        raise RuntimeError(f"the workers' affinity seats have {consumers} consumers, not one each")


async def run_configuration(root: Path, refs: list[AdapterRef], picks: list[int], shape: Shape, adapter_bytes: int,
                            affinity: bool) -> Run:
    name = "affinity" if affinity else "no affinity"
    started = time.perf_counter()
    with private_vhost("bench-affinity") as url, \
            worker_processes(root / name.replace(" ", "-"), url, root / "blobs", shape, adapter_bytes,
                             affinity) as workers:
        await workers.until("ready", STARTUP_SECONDS)
        print(f"{name}: {shape.workers} workers up in {time.perf_counter() - started:.1f} s", flush=True)
        bus = RabbitBus(url, t.topology([ENTRY.slug], adapter_affinity=affinity), connection_name="bench-client")
        await bus.start()
        if affinity:
            await check_seats(bus, shape)
        tokens = [0]

        async def send(number: int, index: int) -> None:
            _, completion_tokens = await streamed(bus, job_for(refs[index], number, shape))
            tokens[0] += completion_tokens  # after the await: `tokens[0] += await ...` would read it before

        try:
            await drive(picks[:shape.warmup], shape.clients, send)
            await workers.reset()
            tokens[0] = 0
            seconds = await drive(picks[shape.warmup:], shape.clients, send)
        finally:
            await bus.close()
        run = Run(name, await workers.stop(), seconds, tokens[0])
    print(f"{name}: {run.total.requests} requests in {seconds:.1f} s", flush=True)
    return run


async def measure_affinity(root: Path, refs: list[AdapterRef], picks: list[int], shape: Shape,
                           adapter_bytes: int) -> dict:
    """Both configurations on the same picks (warm-up first); the figures and the summary's keys."""
    runs = [await run_configuration(root, refs, picks, shape, adapter_bytes, affinity) for affinity in (True, False)]
    print(f"{shape.workers} worker processes over RabbitMQ, each {shape.slots} slots, CPU tier {shape.cpu_adapters} "
          f"adapters, disk tier {shape.disk_adapters}, torch threads {shape.threads}; {shape.clients} clients; "
          f"{shape.warmup} warm-up + {shape.affinity_requests} measured requests; affinity wait {AFFINITY_WAIT_MS} ms")
    rows = []
    for run in runs:
        total = run.total
        spread = " / ".join(f"{tally.requests / max(1, total.requests):.0%}" for tally in run.tallies)
        rows.append([run.name, total.requests, total.hit_rate("slot"), total.hit_rate("cpu"), total.hit_rate("disk"),
                     spread, total.requests / run.seconds, run.tokens / run.seconds])
    print_table(["configuration", "requests", "slot hit", "cpu hit", "disk hit", "requests per worker", "req/s",
                 "tok/s"], rows)
    with_affinity, without = (run.total for run in runs)
    return {
        "affinity_hit_rate": with_affinity.hit_rate("slot"), "no_affinity_hit_rate": without.hit_rate("slot"),
        "affinity_cpu_hit_rate": with_affinity.hit_rate("cpu"), "no_affinity_cpu_hit_rate": without.hit_rate("cpu"),
        "affinity_over_no_affinity": with_affinity.hit_rate("slot") / without.hit_rate("slot")
        if without.hit_rate("slot") else None,
        "affinity_tok_s": runs[0].tokens / runs[0].seconds, "no_affinity_tok_s": runs[1].tokens / runs[1].seconds,
        "affinity_busiest_worker_share": max(t_.requests for t_ in runs[0].tallies) / max(1, with_affinity.requests),
        "affinity_workers": shape.workers, "affinity_requests": shape.affinity_requests,
    }


if __name__ == "__main__":
    worker_main(sys.argv[1:])
