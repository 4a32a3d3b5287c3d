"""The validator's Prometheus metrics (served on the app's /metrics)."""
from __future__ import annotations

from prometheus_client import Counter, Histogram

VALIDATIONS = Counter("loraserve_validator_validations_total",
                      "Static validations by model and result code (passed: on to the GPU pool)",
                      ["model", "result_code"])
VALIDATION_SECONDS = Histogram("loraserve_validator_seconds", "Seconds one static validation took",
                               buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30))
BYTES_READ = Counter("loraserve_validator_bytes_read_total", "Bytes read from the blob store (config and headers)")
