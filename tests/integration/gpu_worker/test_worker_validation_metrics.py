"""GPU validation requests in the worker's Prometheus counters: one that finishes with a result counts under
completion_window="validation" with its tokens (as the usage API bills it), a failed verdict counts nothing, and
users' windows do not move."""
from prometheus_client import REGISTRY, generate_latest

from shared.contracts.messages import ResponseStatusChanged, ValidationStatusChanged
from tests.integration.gpu_worker.conftest import ENTRY
from tests.integration.gpu_worker.test_worker_runtime import SOURCE, validation
from tests.integration.gpu_worker.test_worker_usage_metrics import counts

USER_WINDOWS = ("asap", "priority", "standard", "flex", "unknown")


async def verdict_of(platform, response_id: str, adapter: str) -> ValidationStatusChanged:
    bus, _, refs, events = platform
    await bus.publish(validation(response_id, refs[adapter]), source=SOURCE)
    return (await events.wait_for(lambda m: isinstance(m, ValidationStatusChanged)
                                  and m.validation_id == f"val-{response_id}"))[0]


async def test_a_validation_that_finishes_counts_under_the_validation_window(platform):
    before, users_before = counts("validation"), [counts(w) for w in USER_WINDOWS]
    assert (await verdict_of(platform, "resp_val_metered", "phrase")).status == "succeeded"
    response = [m for m in platform[3].by_type[ResponseStatusChanged.TYPE] if m.response_id == "resp_val_metered"][-1]
    assert counts("validation") == [before[0] + 1, before[1] + response.prompt_tokens,
                                    before[2] + response.completion_tokens]
    assert response.completion_tokens > 0
    assert [counts(w) for w in USER_WINDOWS] == users_before
    exposition = generate_latest(REGISTRY).decode()
    assert f'loraserve_worker_finished_requests_total{{completion_window="validation",model="{ENTRY.id}"}}' in exposition


async def test_a_failed_verdict_counts_nothing(platform):
    before = counts("validation")
    assert (await verdict_of(platform, "resp_val_nan_metered", "nan")).status == "failed"
    assert counts("validation") == before
