"""The public event catalogue as an AsyncAPI 2.6 document, generated from the message models.

`python -m shared.contracts.asyncapi > shared/contracts/asyncapi.yaml`; a test keeps the
committed file equal to what the models say.
"""
from __future__ import annotations

import sys

import yaml

from shared.contracts import topology as t
from shared.contracts.cloudevents import CloudEvent
from shared.contracts.messages import MESSAGE_TYPES, PUBLIC_EVENT_TYPES, RESPONSE_OUTCOMES

# the router's background Response outcomes are public too (published through its outbox)
OUTCOME_MODELS = {model.TYPE: model for model in RESPONSE_OUTCOMES.values()}
CATALOGUE = tuple(dict.fromkeys((*PUBLIC_EVENT_TYPES, *OUTCOME_MODELS)))


def _description(event_type: str, model) -> str:
    if event_type in OUTCOME_MODELS:
        return (f"A background Response ended `{event_type.removeprefix('response.')}`; `response` is the "
                "Response object as GET /v1/responses/{id} returns it.")
    return (model.__doc__ or event_type).strip().splitlines()[0]


def _channel(event_type: str) -> dict:
    model = {**MESSAGE_TYPES, **OUTCOME_MODELS}[event_type]
    return {
        "description": _description(event_type, model),
        "parameters": {"org_id": {"description": "the organisation the event belongs to",
                                  "schema": {"type": "string"}}},
        "bindings": {"amqp": {"is": "routingKey", "exchange": {"name": t.EVENTS, "type": "topic", "durable": True}}},
        "subscribe": {
            "operationId": "on_" + event_type.replace(".", "_"),
            "message": {
                "name": event_type,
                "contentType": "application/cloudevents+json",
                "headers": {"type": "object", "description": "CloudEvents 1.0 envelope; `data` is the payload"},
                "payload": model.model_json_schema(),
            },
        },
    }


def document() -> dict:
    return {
        "asyncapi": "2.6.0",
        "info": {
            "title": "LoRAServe public events",
            "version": "1.0.0",
            "description": "Events published on the AMQP topic exchange "
                           f"`{t.EVENTS}` under routing key `org.<org_id>.<type>`, each a structured "
                           "CloudEvent; customers outside the cluster read them from GET /v1/events (SSE).",
        },
        "defaultContentType": "application/cloudevents+json",
        "channels": {f"org.{{org_id}}.{event_type}": _channel(event_type) for event_type in CATALOGUE},
        "components": {"schemas": {"CloudEvent": CloudEvent.model_json_schema()}},
    }


def render() -> str:
    return yaml.safe_dump(document(), sort_keys=False, width=120)


if __name__ == "__main__":
    sys.stdout.write(render())
