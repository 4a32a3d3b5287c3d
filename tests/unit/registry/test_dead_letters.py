"""Which queues' dead letters the registry reads, and how it tells why a job died."""
from services.registry.dead_letters import dead_letter_queues, death_from_headers, death_of, explain
from shared.bus.base import DeathRecord, Delivery
from shared.contracts import topology as t
from shared.contracts.cloudevents import CloudEvent
from shared.contracts.messages import RunGpuValidation
from tests.unit.registry.documents import adapter


def test_the_validator_queue_and_every_gpu_validation_queue_are_read():
    queues = dead_letter_queues(["kimi-k2-6", "kimi-k2-tiny"])
    assert queues == [f"{t.VALIDATION_QUEUE}.dlq", f"{t.gpu_validation_queue('kimi-k2-6')}.dlq",
                      f"{t.gpu_validation_queue('kimi-k2-tiny')}.dlq"]


def test_the_reason_comes_from_the_bus_death_record_or_the_amqp_header():
    event = CloudEvent(source="t", type="x")
    recorded = Delivery(event=event, queue="q.dlq", routing_key="q", delivery_count=1,
                        death=DeathRecord(reason="delivery_limit", queue="q", count=3))
    assert death_of(recorded) == ("delivery_limit", "q")
    headers = {"x-death": [{"reason": "rejected", "queue": "loraserve.validator.jobs", "count": 1}]}
    assert death_from_headers(headers) == ("rejected", "loraserve.validator.jobs")
    assert death_from_headers({}) == ("unknown", None)


def test_the_message_says_which_step_died_and_why():
    job = RunGpuValidation(validation_id="val_1", org_id="acme", model="loraserve/kimi-k2-tiny",
                           model_slug="kimi-k2-tiny", response_id="resp_1", adapter=adapter())
    message = explain(job, "delivery_limit", "loraserve.worker.kimi-k2-tiny.validation")
    assert "GPU validation" in message and "delivery_limit" in message and "kimi-k2-tiny" in message
