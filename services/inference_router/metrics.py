"""The router's Prometheus metrics (served on the kit's /metrics)."""
from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

INFERENCE_REQUESTS = Counter("loraserve_router_requests_total", "Inference requests admitted",
                             ["model", "window", "lora"])
FIRST_REPLY_SECONDS = Histogram("loraserve_router_first_reply_seconds",
                                "Seconds from publishing a job to the worker's first reply", ["model"],
                                buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 120))
OUTCOMES = Counter("loraserve_router_outcomes_total", "How sync and streamed jobs ended", ["model", "outcome"])
FAIR_WAITING = Gauge("loraserve_router_fair_waiting", "Jobs waiting at this router for their org's turn", ["model"])
FAIR_WAIT_SECONDS = Histogram("loraserve_router_fair_wait_seconds",
                              "Seconds a job waited at the router for its org's turn before it was published",
                              ["model"], buckets=(0.001, 0.01, 0.05, 0.1, 0.5, 1, 5, 30, 120, 600, 3600))
