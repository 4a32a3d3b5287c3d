"""The RabbitMQ topology, declared once, as data.

Both bus implementations (RabbitMQ and in-process) and the generated RabbitMQ
definitions in deploy/ are built from `topology(catalogue_slugs)`.
RabbitMQ 3.10: quorum queues carry the delivery limit (no priorities); classic
queues carry priorities, so their consumers bound redeliveries themselves.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from enum import Enum

COMMANDS = "loraserve.commands"
EVENTS = "loraserve.events"
DEAD_LETTERS = "loraserve.dlx"
AFFINITY_PREFIX = "loraserve.affinity."

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
    # rabbitmq_consistent_hash_exchange: the routing key is hashed onto the bound queues, the binding key of each
    # is its weight (deploy/ensure-rabbitmq.sh, compose and k8s enable the plugin)
    CONSISTENT_HASH = "x-consistent-hash"


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
    # a satellite of a shared queue (a worker's affinity queue): its retries and dead letters go to `home`, and
    # the broker moves what waited `message_ttl_ms` (or outlived its consumer) there through `expired_to`
    home: str | None = None
    expired_to: tuple[str, str] | None = None  # (exchange, routing key) the broker dead-letters into
    message_ttl_ms: int | None = None
    max_ready: int | None = None  # more ready messages than this: the publish is refused (reject-publish)

    @property
    def dlq_name(self) -> str:
        return f"{self.home or self.name}.dlq"

    @property
    def retry_queue(self) -> str:
        """Where a failed delivery goes back to (and the routing key of its dead letter)."""
        return self.home or self.name

    def arguments(self) -> dict:
        args: dict = {"x-queue-type": self.type.value}
        if self.delivery_limit is not None:
            args["x-delivery-limit"] = self.delivery_limit
        if self.max_priority is not None:
            args["x-max-priority"] = self.max_priority
        if self.single_active_consumer:
            args["x-single-active-consumer"] = True
        if self.expired_to is not None:
            args["x-dead-letter-exchange"], args["x-dead-letter-routing-key"] = self.expired_to
        elif self.dead_letter:
            args["x-dead-letter-exchange"] = DEAD_LETTERS
            args["x-dead-letter-routing-key"] = self.name
        if self.message_ttl_ms is not None:
            args["x-message-ttl"] = self.message_ttl_ms
        if self.max_ready is not None:
            args["x-max-length"] = self.max_ready
            args["x-overflow"] = "reject-publish"
        return args


@dataclass(frozen=True)
class Topology:
    exchanges: tuple[Exchange, ...]
    queues: tuple[Queue, ...]
    dead_letter_queues: tuple[Queue, ...] = field(default=())
    adapter_affinity: bool = False  # inference jobs with an adapter go to the model's affinity exchange first

    def queue(self, name: str) -> Queue:
        for queue in (*self.queues, *self.dead_letter_queues):
            if queue.name == name:
                return queue
        raise KeyError(name)

    def routes(self, exchange: str, routing_key: str, affinity_key: str | None) -> list[tuple[str, str]]:
        """Where a message goes, in the order to try: a job's affinity exchange first (the worker holding its
        adapter), then its shared queue when that is refused (the worker's queue is full, or no worker is bound)."""
        hashed = self._affinity_exchanges.get(routing_key) if exchange == COMMANDS else None
        if self.adapter_affinity and affinity_key and hashed is not None:
            return [(hashed, affinity_key), (exchange, routing_key)]
        return [(exchange, routing_key)]

    @functools.cached_property
    def _affinity_exchanges(self) -> dict[str, str]:
        """Inference routing key -> its model's affinity exchange (looked up on every publish)."""
        return {inference_key(e.name.removeprefix(AFFINITY_PREFIX)): e.name for e in self.exchanges
                if e.type is ExchangeType.CONSISTENT_HASH and e.name.startswith(AFFINITY_PREFIX)}


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


def affinity_exchange(slug: str) -> str:
    """Inference jobs keyed by their adapter, hashed onto the model's workers' affinity queues."""
    return f"{AFFINITY_PREFIX}{slug}"


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


AFFINITY_WEIGHT = "1"  # every worker of a model takes an equal share of its adapters
AFFINITY_SEATS = 64  # affinity queues per model; a worker beyond them consumes the shared queue only


def affinity_queue(slug: str, seat: int, *, wait_ms: int, max_ready: int) -> Queue:
    """One seat of the model's ring of workers, a share of its adapters: jobs for them wait here up to `wait_ms`
    for the worker sitting in it (which likely holds the adapter hot), then fall back to the shared queue; so does
    the overflow beyond `max_ready` and everything a dead worker left (its unacked jobs come back here, expire, and
    move on). Seats are durable, never exclusive and never expire: a queue deleted while bound could take jobs
    with it. A starting worker takes the lowest seat nobody consumes (the seat of a worker that died, first), and
    one that stops unbinds its seat first (`services/gpu_worker/affinity.py`)."""
    if not 0 <= seat < AFFINITY_SEATS:
        raise ValueError(f"seat {seat} is outside 0..{AFFINITY_SEATS - 1}")
    home = inference_queue(slug)
    return Queue(
        f"{home}.hot.{seat}",
        QueueType.CLASSIC,
        bindings=((affinity_exchange(slug), AFFINITY_WEIGHT),),
        max_priority=MAX_PRIORITY,
        home=home,
        expired_to=(COMMANDS, inference_key(slug)),
        message_ttl_ms=wait_ms,
        max_ready=max_ready,
    )


def topology(slugs: list[str], *, adapter_affinity: bool = True) -> Topology:
    exchanges = [
        Exchange(COMMANDS, ExchangeType.DIRECT),
        Exchange(EVENTS, ExchangeType.TOPIC),
        Exchange(DEAD_LETTERS, ExchangeType.DIRECT),
        *(Exchange(cancels_exchange(s), ExchangeType.FANOUT) for s in slugs),
        *(Exchange(affinity_exchange(s), ExchangeType.CONSISTENT_HASH) for s in slugs),
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
    return Topology(tuple(exchanges), tuple(queues), dead_letter_queues, adapter_affinity=adapter_affinity)
