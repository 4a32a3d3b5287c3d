"""The worker's Prometheus counters of finished requests and their tokens, per model and completion window."""
from prometheus_client import REGISTRY

from tests.integration.gpu_worker.conftest import ENTRY
from tests.integration.gpu_worker.test_worker_runtime import SOURCE, job, replies_of

COUNTERS = ("loraserve_worker_finished_requests_total", "loraserve_worker_prompt_tokens_total",
            "loraserve_worker_completion_tokens_total")


def counts(window: str) -> list[float]:
    return [REGISTRY.get_sample_value(name, {"model": ENTRY.id, "completion_window": window}) or 0.0
            for name in COUNTERS]


async def test_finished_requests_and_tokens_are_counted_per_model_and_window(platform):
    bus, _, refs, _ = platform
    before, other_before = counts("flex"), counts("asap")
    replies = await replies_of(await bus.request(job("resp_metered", refs["phrase"], completion_window="flex"),
                                                 source=SOURCE))
    final = replies[-1]
    assert counts("flex") == [before[0] + 1, before[1] + final.prompt_tokens, before[2] + final.completion_tokens]
    assert counts("asap") == other_before
    # never a label per LoRA (unbounded): per-LoRA figures come from the router's usage API
    for name in COUNTERS:
        family = next(m for m in REGISTRY.collect() if m.name == name.removesuffix("_total"))
        assert all(set(s.labels) == {"model", "completion_window"} for s in family.samples)
