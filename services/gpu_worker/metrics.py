"""The worker's Prometheus metrics (served by the app's /metrics)."""
from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from services.gpu_worker.engines.torch_engine.engine import EngineObserver
from services.gpu_worker.engines.torch_engine.slots import Placement

SLOTS_IN_USE = Gauge("loraserve_worker_slots_in_use", "Adapter slots holding an adapter", ["model"])
ADAPTER_CACHE = Counter("loraserve_worker_adapter_cache_total", "Adapter look-ups by cache tier and result",
                        ["model", "tier", "result"])
ADAPTER_LOAD_SECONDS = Histogram("loraserve_worker_adapter_load_seconds",
                                 "Seconds to bring an adapter into a tier (disk: download; cpu: fetch+read+check; slot: copy)",
                                 ["model", "tier"], buckets=(0.001, 0.01, 0.05, 0.1, 0.5, 1, 5, 30, 120))
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

    def adapter_placed(self, placement: Placement, seconds: float) -> None:
        ADAPTER_CACHE.labels(self.model, "slot", "miss" if placement.loaded else "hit").inc()
        if placement.loaded:
            ADAPTER_LOAD_SECONDS.labels(self.model, "slot").observe(seconds)
        SLOTS_IN_USE.labels(self.model).set(self._slots_in_use())

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


def record_tier(model: str, tier: str):
    """A cache's hit/miss callback for `tier` (disk: download; cpu: read and check)."""

    def on_lookup(hit: bool, seconds: float) -> None:
        ADAPTER_CACHE.labels(model, tier, "hit" if hit else "miss").inc()
        if not hit:
            ADAPTER_LOAD_SECONDS.labels(model, tier).observe(seconds)

    return on_lookup
