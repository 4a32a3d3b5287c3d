"""gpu-worker's part of an app: load the model, run the engine, consume the model's queues and cancels.

`loraserve worker --model ID` serves it alone (health, readiness = model loaded, metrics);
`loraserve dev` runs it beside every other service on the tiny model.
"""
from __future__ import annotations

import asyncio

from aiohttp import web
from pydantic import ValidationError

from services.gpu_worker.adapters.residency import PinLimit, parse_pins
from services.gpu_worker.affinity import Ring, SeatOptions, route_of
from services.gpu_worker.engines.base import ServingEngine
from services.gpu_worker.engines.torch_engine.model_host import EngineOptions
from services.gpu_worker.jobs.inference_jobs import handle_generate
from services.gpu_worker.jobs.validation_jobs import handle_gpu_validation
from services.gpu_worker.metrics import JOBS_RECEIVED
from services.gpu_worker.pins import pin_routes
from services.gpu_worker.worker import Worker, WorkerOptions
from shared.bus.base import BusError, Delivery
from shared.catalogue.catalogue import ModelEntry
from shared.catalogue.engines import with_overrides
from shared.contracts import topology
from shared.contracts.messages import CancelResponse
from shared.logging import get_logger
from shared.platform import Platform, ServicePart

NAME = "gpu-worker"
VALIDATION_PREFETCH = 2
RING_CHECK_SECONDS = 10.0  # how often a worker checks its seat and looks for seats of dead workers nobody took
log = get_logger("gpu_worker")


def options_from(platform: Platform) -> WorkerOptions:
    settings = platform.settings
    entry = platform.catalogue.get(settings.worker_model)
    engine = EngineOptions(num_slots=settings.worker_slots, max_batch=settings.worker_max_batch,
                           max_len=entry.architecture.max_position_embeddings)
    return WorkerOptions(engine=engine, cache_dir=settings.data_dir / "worker-cache",
                         org_max_running=settings.worker_org_max_running,
                         pinned_loras=tuple(parse_pins(settings.worker_pinned_loras)),
                         slot_wait_bound=settings.worker_slot_wait_bound_seconds,
                         usage_half_life=settings.worker_adapter_half_life_seconds)


def handlers(worker: Worker):
    """The routing table: queue or exchange -> handler."""

    shared_queue = topology.inference_queue(worker.slug)

    async def on_inference(delivery: Delivery) -> None:
        JOBS_RECEIVED.labels(worker.entry.id, route_of(delivery, shared_queue)).inc()
        await handle_generate(worker, delivery)

    async def on_validation(delivery: Delivery) -> None:
        await handle_gpu_validation(worker, delivery)

    async def on_cancel(delivery: Delivery) -> None:
        try:
            cancel = CancelResponse.from_event(delivery.event)
        except (ValidationError, ValueError) as exc:
            log.warning("malformed_cancel", error=str(exc))
            return
        worker.cancel(cancel.response_id)

    return on_inference, on_validation, on_cancel


def seat_options(platform: Platform) -> SeatOptions | None:
    """How this worker sits in its model's affinity ring (None: affinity routing is off)."""
    settings = platform.settings
    if not settings.adapter_affinity:
        return None
    return SeatOptions(wait_ms=round(settings.affinity_wait_seconds * 1000), max_ready=settings.worker_max_batch)


def lifecycle(worker: Worker, prefetch: int, affinity: SeatOptions | None = None):
    async def worker_ctx(app: web.Application):
        await worker.start()
        on_inference, on_validation, on_cancel = handlers(worker)
        subscriptions = [
            await worker.bus.subscribe(topology.cancels_exchange(worker.slug), [""], on_cancel),
            await worker.bus.consume(topology.inference_queue(worker.slug), on_inference, prefetch=prefetch),
            await worker.bus.consume(topology.gpu_validation_queue(worker.slug), on_validation,
                                     prefetch=VALIDATION_PREFETCH),
        ]
        ring = tending = None
        if affinity is not None:
            ring = Ring(worker.bus, worker.slug, on_inference, prefetch=prefetch, options=affinity)
            try:
                await ring.join()
            except BusError as exc:  # the shared queue serves meanwhile; the ring's next check takes a seat
                log.warning("affinity_seat_not_taken", error=str(exc))
            tending = asyncio.get_running_loop().create_task(ring.tend(RING_CHECK_SECONDS))
        yield
        if ring is not None:
            tending.cancel()
            await asyncio.gather(tending, return_exceptions=True)
            await ring.leave()
        for subscription in reversed(subscriptions):
            await subscription.close()
        await worker.stop()

    return worker_ctx


def part_for(worker: Worker, affinity: SeatOptions | None = None) -> ServicePart:
    # twice the batch: the worker then chooses which org's jobs run (org_share.py), not only the queue's order
    prefetch = 2 * worker.options.engine.max_batch
    return ServicePart(name=NAME, routes=pin_routes(worker.residency),
                       cleanup_ctx=[lifecycle(worker, prefetch, affinity)], readiness=[worker.ready])


def engine_for(platform: Platform, entry: ModelEntry, options: WorkerOptions) -> ServingEngine | None:
    """The engine `--engine` / LORASERVE_WORKER_ENGINE names, else the catalogue's; None: the torch engine."""
    name = platform.settings.worker_engine or entry.engine.name
    if name == "torch":
        if entry.seed is None:
            raise SystemExit(f"{entry.id} has no seed: the torch engine serves only models the catalogue builds")
        return None
    if name != "vllm":
        raise SystemExit(f"unknown engine {name!r} (torch or vllm)")
    from services.gpu_worker.engines.vllm_engine.engine import VllmEngine  # the vLLM environment only
    from services.gpu_worker.engines.vllm_engine.model_dir import VllmOptions

    settings = platform.settings
    return VllmEngine(entry, VllmOptions(
        slots=settings.worker_slots, cpu_adapters=settings.worker_cpu_adapters, max_batch=settings.worker_max_batch,
        cpu_kv_cache_bytes=settings.vllm_cpu_kv_cache_bytes, model_path=settings.worker_model_path,
        data_dir=settings.data_dir))


def build(platform: Platform) -> ServicePart:
    entry = platform.catalogue.get(platform.settings.worker_model)
    try:
        engine_spec = with_overrides(entry.engine, platform.settings.worker_engine_args)
    except ValidationError as exc:
        raise SystemExit(f"LORASERVE_WORKER_ENGINE_ARGS: {exc}") from None
    entry = entry.model_copy(update={"engine": engine_spec})
    options = options_from(platform)
    engine = engine_for(platform, entry, options)
    try:
        worker = Worker(entry, platform.bus, platform.blobs, platform.source, options, engine)
    except (PinLimit, ValueError) as exc:
        raise SystemExit(f"LORASERVE_WORKER_PINNED_LORAS: {exc}") from None
    if engine is not None:
        engine.pinned = worker.residency.is_pinned_key  # operators' pins hold in vLLM's slots too
    return part_for(worker, seat_options(platform))
