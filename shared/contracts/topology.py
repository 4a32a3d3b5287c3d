"""The RabbitMQ topology, declared once, as data.

Both bus implementations (RabbitMQ and in-process) and the generated RabbitMQ
definitions in deploy/ are built from `topology(catalogue_slugs)`.
RabbitMQ 3.10: quorum queues carry the delivery limit (no priorities); classic
queues carry priorities, so their consumers bound redeliveries themselves.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

COMMANDS = "loraserve.commands"
EVENTS = "loraserve.events"
DEAD_LETTERS = "loraserve.dlx"

MAX_PRIORITY = 10
# completion_window -> AMQP priority of the inference job
PRIORITY_BY_WINDOW = {"asap": 9, "priority": 7, "standard": 5, "flex": 1}

VALIDATION_DELIVERY_LIMIT = 5
GPU_VALIDATION_DELIVERY_LIMIT = 3
INFERENCE_DELIVERY_LIMIT = 3  # enforced by the worker (classic queue)


class ExchangeType(str, Enum):
    DIRECT = "direct"
    TOPIC = "topic"
    FANOUT = "fanout"


class QueueType(str, Enum):
    QUORUM = "quorum"
    CLASSIC = "classic"


@dataclass(frozen=True)
class Exchange:
    name: str
    type: ExchangeType


@dataclass(frozen=True)
class Queue:
    name: str
    type: QueueType
    bindings: tuple[tuple[str, str], ...] = ()  # (exchange, routing key)
    delivery_limit: int | None = None  # quorum only
    max_priority: int | None = None  # classic only
    single_active_consumer: bool = False  # one consumer at a time gets messages; the others wait their turn
    dead_letter: bool = True  # dead letters go to DEAD_LETTERS keyed by queue name into <name>.dlq
    # bindings of earlier releases, removed from a broker that still has them (RabbitMQ keeps bindings)
    retired_bindings: tuple[tuple[str, str], ...] = ()

    @property
    def dlq_name(self) -> str:
        return f"{self.name}.dlq"

    def arguments(self) -> dict:
        args: dict = {"x-queue-type": self.type.value}
        if self.delivery_limit is not None:
            args["x-delivery-limit"] = self.delivery_limit
        if self.max_priority is not None:
            args["x-max-priority"] = self.max_priority
        if self.single_active_consumer:
            args["x-single-active-consumer"] = True
        if self.dead_letter:
            args["x-dead-letter-exchange"] = DEAD_LETTERS
            args["x-dead-letter-routing-key"] = self.name
        return args


@dataclass(frozen=True)
class Topology:
    exchanges: tuple[Exchange, ...]
    queues: tuple[Queue, ...]
    dead_letter_queues: tuple[Queue, ...] = field(default=())

    def queue(self, name: str) -> Queue:
        for queue in (*self.queues, *self.dead_letter_queues):
            if queue.name == name:
                return queue
        raise KeyError(name)


# -- routing keys ---------------------------------------------------------------
def validate_key(slug: str) -> str:
    return f"validate.{slug}"


def gpu_validate_key(slug: str) -> str:
    return f"gpu-validate.{slug}"


def inference_key(slug: str) -> str:
    return f"inference.{slug}"


def event_key(org_id: str, event_type: str) -> str:
    """Events are routed as org.<org_id>.<type>, so a consumer can bind one org or all."""
    return f"org.{org_id}.{event_type}"


def cancels_exchange(slug: str) -> str:
    return f"loraserve.cancels.{slug}"


def is_mandatory(exchange: str) -> bool:
    """Jobs and replies must reach a queue (unroutable is an error); an event or a cancel nobody
    listens to is not: subscribers come and go."""
    return exchange != EVENTS and not exchange.startswith("loraserve.cancels.")


# -- queue names ----------------------------------------------------------------
VALIDATION_QUEUE = "loraserve.validator.jobs"
REGISTRY_STATUS_QUEUE = "loraserve.registry.validation-status"
FILE_REFS_QUEUE = "loraserve.file-ingest.lora-refs"
EVENT_LOG_QUEUE = "loraserve.registry.event-log"
# the public events the registry's event log keeps (never the internal *.status.changed ones)
EVENT_LOG_BINDINGS = ("org.*.lora.#", "org.*.file.#", "org.*.response.completed", "org.*.response.failed",
                      "org.*.response.cancelled", "org.*.response.incomplete")
ROUTER_RESPONSES_QUEUE = "loraserve.router.response-events"
WEBHOOKS_QUEUE = "loraserve.webhooks.events"
# the public events webhooks are made of (services/webhooks/catalog.py maps them to webhook event types)
WEBHOOK_BINDINGS = ("org.*.lora.validation.finished", "org.*.lora.deleted", "org.*.response.completed",
                    "org.*.response.failed", "org.*.response.cancelled", "org.*.response.incomplete")


def gpu_validation_queue(slug: str) -> str:
    return f"loraserve.worker.{slug}.validation"


def inference_queue(slug: str) -> str:
    return f"loraserve.worker.{slug}.inference"


def topology(slugs: list[str]) -> Topology:
    exchanges = [
        Exchange(COMMANDS, ExchangeType.DIRECT),
        Exchange(EVENTS, ExchangeType.TOPIC),
        Exchange(DEAD_LETTERS, ExchangeType.DIRECT),
        *(Exchange(cancels_exchange(s), ExchangeType.FANOUT) for s in slugs),
    ]
    queues = [
        Queue(
            VALIDATION_QUEUE,
            QueueType.QUORUM,
            bindings=tuple((COMMANDS, validate_key(s)) for s in slugs),
            delivery_limit=VALIDATION_DELIVERY_LIMIT,
        ),
        Queue(
            REGISTRY_STATUS_QUEUE,
            QueueType.QUORUM,
            bindings=((EVENTS, "org.*.validation.status.changed"),),
            delivery_limit=VALIDATION_DELIVERY_LIMIT,
        ),
        Queue(
            FILE_REFS_QUEUE,
            QueueType.QUORUM,
            bindings=((EVENTS, "org.*.lora.created"), (EVENTS, "org.*.lora.deleted")),
            delivery_limit=VALIDATION_DELIVERY_LIMIT,
        ),
        Queue(
            ROUTER_RESPONSES_QUEUE,
            QueueType.QUORUM,
            # the workers' status events only, not the router's own public response.<outcome> events
            bindings=((EVENTS, "org.*.response.status.changed"),),
            retired_bindings=((EVENTS, "org.*.response.#"),),
            delivery_limit=VALIDATION_DELIVERY_LIMIT,
        ),
    ]
    # one appender at a time writes the per-org event log, in the order the events arrive
    queues.append(Queue(EVENT_LOG_QUEUE, QueueType.QUORUM, bindings=tuple((EVENTS, k) for k in EVENT_LOG_BINDINGS),
                        delivery_limit=VALIDATION_DELIVERY_LIMIT, single_active_consumer=True))
    for slug in slugs:
        queues.append(
            Queue(
                gpu_validation_queue(slug),
                QueueType.QUORUM,
                bindings=((COMMANDS, gpu_validate_key(slug)),),
                delivery_limit=GPU_VALIDATION_DELIVERY_LIMIT,
            )
        )
        queues.append(
            Queue(
                inference_queue(slug),
                QueueType.CLASSIC,
                bindings=((COMMANDS, inference_key(slug)),),
                max_priority=MAX_PRIORITY,
            )
        )
    # the webhooks service's fan-out of public events into deliveries
    queues.append(Queue(WEBHOOKS_QUEUE, QueueType.QUORUM, bindings=tuple((EVENTS, k) for k in WEBHOOK_BINDINGS),
                        delivery_limit=VALIDATION_DELIVERY_LIMIT))
    dead_letter_queues = tuple(
        Queue(q.dlq_name, QueueType.QUORUM, bindings=((DEAD_LETTERS, q.name),), dead_letter=False)
        for q in queues
        if q.dead_letter
    )
    return Topology(tuple(exchanges), tuple(queues), dead_letter_queues)
