"""The worker's Prometheus metrics (served by the app's /metrics)."""
from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from services.gpu_worker.engines.torch_engine.engine import EngineObserver
from services.gpu_worker.engines.torch_engine.slots import Placement

SLOTS_IN_USE = Gauge("loraserve_worker_slots_in_use", "Adapter slots holding an adapter", ["model"])
ADAPTER_CACHE = Counter("loraserve_worker_adapter_cache_total", "Adapter look-ups by cache tier and result",
                        ["model", "tier", "result"])
LOAD_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 30, 120)
# tiers: disk = blob store -> local disk, cpu = disk -> CPU memory (read and check), slot = CPU -> slot (stage + copy)
ADAPTER_LOAD_SECONDS = Histogram("loraserve_worker_adapter_load_seconds",
                                 "Seconds to bring an adapter into a tier from the one below (disk: blob store to "
                                 "disk; cpu: disk to CPU, read and checked; slot: CPU to a slot, staged and copied)",
                                 ["model", "tier"], buckets=LOAD_BUCKETS)
ADAPTER_EVICTIONS = Counter("loraserve_worker_adapter_evictions_total",
                            "Adapters given up by a tier (cpu, slot), by reason: idle (no job held for it), queued "
                            "(every candidate had jobs), wait_bound (a request waited past the bound), not_admitted "
                            "(cpu: a newcomer worth less than what it would push out passed through)",
                            ["model", "tier", "reason"])
ADAPTER_LOAD_WAIT_SECONDS = Histogram("loraserve_worker_adapter_load_wait_seconds",
                                      "Seconds a request waited for its adapter to be loaded into a tier (cpu: after "
                                      "its prompt was ready; slot: from the engine's accepting it to its admission)",
                                      ["model", "tier"], buckets=LOAD_BUCKETS)
JOBS_RECEIVED = Counter("loraserve_worker_jobs_received_total",
                        "Inference jobs by the way they came: seat (this worker's affinity seat), shared_after_wait "
                        "(a seat's job whose worker did not take it in time), shared", ["model", "route"])
GENERATED_TOKENS = Counter("loraserve_worker_generated_tokens_total", "Tokens generated", ["model"])
TOKENS_PER_SECOND = Gauge("loraserve_worker_tokens_per_second", "Tokens per second over the last engine step",
                          ["model"])
QUEUE_WAIT_SECONDS = Histogram("loraserve_worker_queue_wait_seconds", "Seconds a request waited before its prefill",
                               ["model"], buckets=(0.001, 0.01, 0.05, 0.1, 0.5, 1, 5, 30, 120))
# per model and completion window, never per LoRA (unbounded): per-LoRA figures come from the usage API
FINISHED_REQUESTS = Counter("loraserve_worker_finished_requests_total",
                            "Requests finished with a result (inference, and GPU validations under completion_window "
                            "validation)", ["model", "completion_window"])
PROMPT_TOKENS = Counter("loraserve_worker_prompt_tokens_total", "Prompt tokens of finished requests",
                        ["model", "completion_window"])
COMPLETION_TOKENS = Counter("loraserve_worker_completion_tokens_total", "Completion tokens of finished requests",
                            ["model", "completion_window"])
# a GPU validation's request has no completion window: it counts under this one value (no new label, so every
# series keeps its labels; the router accepts no such window, so no user request shares it)
VALIDATION_WINDOW = "validation"
BATCH_SIZE = Histogram("loraserve_worker_batch_size", "Sequences decoded together per engine step", ["model"],
                       buckets=(1, 2, 4, 8, 16, 32, 64, 128))


class PrometheusObserver(EngineObserver):
    def __init__(self, model: str, slots_in_use):
        self.model = model
        self._slots_in_use = slots_in_use

    def adapter_looked_up(self, resident: bool) -> None:
        ADAPTER_CACHE.labels(self.model, "slot", "hit" if resident else "miss").inc()

    def adapter_placed(self, placement: Placement, seconds: float) -> None:
        ADAPTER_LOAD_SECONDS.labels(self.model, "slot").observe(seconds)
        if placement.evicted is not None:
            ADAPTER_EVICTIONS.labels(self.model, "slot", placement.reason or "idle").inc()
        SLOTS_IN_USE.labels(self.model).set(self._slots_in_use())

    def load_waited(self, seconds: float) -> None:
        ADAPTER_LOAD_WAIT_SECONDS.labels(self.model, "slot").observe(seconds)

    def admitted(self, queue_wait_seconds: float) -> None:
        QUEUE_WAIT_SECONDS.labels(self.model).observe(queue_wait_seconds)

    def stepped(self, batch_size: int, new_tokens: int, seconds: float) -> None:
        if batch_size:
            BATCH_SIZE.labels(self.model).observe(batch_size)
        if new_tokens:
            GENERATED_TOKENS.labels(self.model).inc(new_tokens)
            TOKENS_PER_SECOND.labels(self.model).set(new_tokens / max(seconds, 1e-9))


def record_finished(model: str, completion_window: str | None, prompt_tokens: int, completion_tokens: int) -> None:
    """One request that finished with a result (an inference job sent by an older router has no window; a GPU
    validation's counts under VALIDATION_WINDOW)."""
    window = completion_window or "unknown"
    FINISHED_REQUESTS.labels(model, window).inc()
    PROMPT_TOKENS.labels(model, window).inc(prompt_tokens)
    COMPLETION_TOKENS.labels(model, window).inc(completion_tokens)


def record_eviction(model: str, tier: str):
    """A cache's eviction callback for `tier`, taking the reason."""

    def on_evict(reason: str) -> None:
        ADAPTER_EVICTIONS.labels(model, tier, reason).inc()

    return on_evict


def record_load_wait(model: str, tier: str, seconds: float) -> None:
    ADAPTER_LOAD_WAIT_SECONDS.labels(model, tier).observe(seconds)


def record_tier(model: str, tier: str):
    """A cache's hit/miss callback for `tier` (disk: download; cpu: read and check)."""

    def on_lookup(hit: bool, seconds: float) -> None:
        ADAPTER_CACHE.labels(model, tier, "hit" if hit else "miss").inc()
        if not hit:
            ADAPTER_LOAD_SECONDS.labels(model, tier).observe(seconds)

    return on_lookup
