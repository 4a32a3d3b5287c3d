"""CloudEvents 1.0 structured-mode envelope and the typed messages carried inside it.

Every message on the bus is a `CloudEvent` whose `type` names a `Message` subclass
and whose `data` is that model's JSON. JSON only: nothing is ever pickled.
"""
from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, ClassVar, Self, TypeVar

from pydantic import BaseModel, ConfigDict, Field

CONTENT_TYPE = "application/cloudevents+json"
MAX_MESSAGE_BYTES = 8 * 1024 * 1024


def utcnow() -> datetime:
    return datetime.now(UTC)


class CloudEvent(BaseModel):
    model_config = ConfigDict(extra="allow")

    specversion: str = "1.0"
    id: str = Field(default_factory=lambda: str(uuid.uuid4()))
    source: str
    type: str
    time: datetime = Field(default_factory=utcnow)
    subject: str | None = None
    datacontenttype: str = "application/json"
    correlationid: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)

    def to_bytes(self) -> bytes:
        return self.model_dump_json(exclude_none=True).encode()

    @classmethod
    def from_bytes(cls, body: bytes) -> CloudEvent:
        if len(body) > MAX_MESSAGE_BYTES:
            raise ValueError(f"message of {len(body)} bytes exceeds {MAX_MESSAGE_BYTES}")
        return cls.model_validate_json(body)


M = TypeVar("M", bound="Message")


class Message(BaseModel):
    """Base of every job (imperative) and event (past tense).

    `TYPE` is the CloudEvents `type`; `routing_key()` says where it goes on its exchange.
    """

    model_config = ConfigDict(extra="forbid")
    TYPE: ClassVar[str]
    EXCHANGE: ClassVar[str]

    def routing_key(self) -> str:
        raise NotImplementedError

    def affinity_key(self) -> str | None:
        """What a consistent-hash route keeps together on one consumer (None: any consumer)."""
        return None

    def subject(self) -> str | None:
        return None

    def to_event(self, source: str, correlation_id: str | None = None) -> CloudEvent:
        return CloudEvent(
            source=source,
            type=self.TYPE,
            subject=self.subject(),
            correlationid=correlation_id,
            data=self.model_dump(mode="json"),
        )

    @classmethod
    def from_event(cls, event: CloudEvent) -> Self:
        if event.type != cls.TYPE:
            raise ValueError(f"expected {cls.TYPE}, got {event.type}")
        return cls.model_validate(event.data)
