"""RabbitMQ definitions (the broker's import format) generated from the topology.

deploy/rabbitmq/definitions.json and its Kubernetes copy are this module's output,
never edited by hand; tests/deploy asserts both equal `render(definitions(...))`.
They hold topology only (vhost, exchanges, queues, bindings): users and
permissions differ per environment and are imported from a second file.

    python -m shared.contracts.rabbit_definitions > deploy/rabbitmq/definitions.json
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from shared.catalogue.catalogue import load_catalogue
from shared.contracts.topology import Exchange, Queue, Topology, topology

DEFAULT_VHOST = "/"


def _exchange(exchange: Exchange, vhost: str) -> dict:
    return {
        "name": exchange.name, "vhost": vhost, "type": exchange.type.value,
        "durable": True, "auto_delete": False, "internal": False, "arguments": {},
    }


def _queue(queue: Queue, vhost: str) -> dict:
    return {
        "name": queue.name, "vhost": vhost, "durable": True, "auto_delete": False,
        "arguments": queue.arguments(),
    }


def _bindings(queue: Queue, vhost: str) -> list[dict]:
    return [
        {
            "source": exchange, "vhost": vhost, "destination": queue.name,
            "destination_type": "queue", "routing_key": routing_key, "arguments": {},
        }
        for exchange, routing_key in queue.bindings
    ]


def from_topology(topo: Topology, vhost: str = DEFAULT_VHOST) -> dict:
    queues = (*topo.queues, *topo.dead_letter_queues)
    return {
        "vhosts": [{"name": vhost}],
        "exchanges": [_exchange(e, vhost) for e in topo.exchanges],
        "queues": [_queue(q, vhost) for q in queues],
        "bindings": [b for q in queues for b in _bindings(q, vhost)],
    }


def definitions(slugs: list[str], vhost: str = DEFAULT_VHOST) -> dict:
    """The broker definitions for the models with these slugs."""
    return from_topology(topology(list(slugs)), vhost)


def render(defs: dict) -> str:
    return json.dumps(defs, indent=2) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vhost", default=DEFAULT_VHOST)
    parser.add_argument("out", nargs="*", type=Path, help="files to write (default: stdout)")
    args = parser.parse_args(argv)
    text = render(definitions(load_catalogue().slugs(), args.vhost))
    if not args.out:
        sys.stdout.write(text)
    for path in args.out:
        path.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
