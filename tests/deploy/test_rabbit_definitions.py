"""The broker definitions are generated from the topology, committed unchanged, and load into RabbitMQ."""
from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import tempfile
import time
import uuid

import aio_pika
import pytest
import yaml

from shared.catalogue.catalogue import load_catalogue
from shared.contracts import rabbit_definitions
from shared.contracts.topology import DEAD_LETTERS, gpu_validation_queue, inference_queue
from tests.deploy.manifests import DEPLOY, K8S, of_kind

COMMITTED = [DEPLOY / "rabbitmq" / "definitions.json", K8S / "base" / "rabbitmq" / "definitions.json"]
REGENERATE = "python -m shared.contracts.rabbit_definitions " + " ".join(
    str(p.relative_to(DEPLOY.parent)) for p in COMMITTED)
DEFINITIONS_DIR = "/etc/rabbitmq/definitions"


@pytest.mark.parametrize("path", COMMITTED, ids=lambda p: str(p.relative_to(DEPLOY.parent)))
def test_the_committed_definitions_are_the_generated_ones(path):
    generated = rabbit_definitions.render(rabbit_definitions.definitions(load_catalogue().slugs()))
    assert path.read_text() == generated, f"stale: regenerate with `{REGENERATE}`"


def test_the_cli_writes_what_it_prints(tmp_path, capsys):
    rabbit_definitions.main([])
    printed = capsys.readouterr().out
    rabbit_definitions.main([str(tmp_path / "a.json"), str(tmp_path / "b.json")])
    assert (tmp_path / "a.json").read_text() == printed == (tmp_path / "b.json").read_text()
    assert json.loads(printed)["vhosts"] == [{"name": "/"}]


def test_a_new_model_gets_its_queues_and_cancel_exchange():
    defs = rabbit_definitions.definitions(["kimi-k2-tiny", "new-model"])
    queues = {q["name"]: q["arguments"] for q in defs["queues"]}
    assert queues[inference_queue("new-model")]["x-max-priority"] > 0
    assert queues[gpu_validation_queue("new-model")]["x-queue-type"] == "quorum"
    assert "loraserve.cancels.new-model" in {e["name"] for e in defs["exchanges"]}


def test_every_binding_and_dead_letter_target_is_declared():
    defs = rabbit_definitions.definitions(load_catalogue().slugs())
    exchanges = {e["name"] for e in defs["exchanges"]}
    queues = {q["name"]: q for q in defs["queues"]}
    assert {b["source"] for b in defs["bindings"]} <= exchanges
    assert {b["destination"] for b in defs["bindings"]} <= set(queues)
    for name, queue in queues.items():
        if "x-dead-letter-exchange" in queue["arguments"]:
            assert queue["arguments"]["x-dead-letter-exchange"] == DEAD_LETTERS
            assert f"{name}.dlq" in queues
    # every queue is reachable: something routes into it
    assert set(queues) == {b["destination"] for b in defs["bindings"]}


def test_compose_and_both_clusters_import_the_generated_topology_before_users():
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    mounts = dict(v.split(":")[:2] for v in compose["services"]["rabbitmq"]["volumes"])
    assert mounts["./rabbitmq/definitions.json"] == f"{DEFINITIONS_DIR}/10-topology.json"
    assert mounts["./rabbitmq/users.compose.json"] == f"{DEFINITIONS_DIR}/20-users.json"
    conf = (DEPLOY / "rabbitmq" / "loraserve.conf").read_text()
    assert f"load_definitions = {DEFINITIONS_DIR}" in conf
    assert (K8S / "base" / "rabbitmq" / "loraserve.conf").read_text() == conf


def test_the_prod_cluster_loads_the_mounted_definitions(rendered):
    cluster = of_kind(rendered("prod"), "RabbitmqCluster")[0]
    assert f"load_definitions = {DEFINITIONS_DIR}" in cluster["spec"]["rabbitmq"]["additionalConfig"]
    template = cluster["spec"]["override"]["statefulSet"]["spec"]["template"]["spec"]
    mount = next(m for m in template["containers"][0]["volumeMounts"] if m["mountPath"] == DEFINITIONS_DIR)
    volume = next(v for v in template["volumes"] if v["name"] == mount["name"])
    sources = [s.get("configMap", s.get("secret"))["name"] for s in volume["projected"]["sources"]]
    assert sources == ["rabbitmq-definitions", "loraserve-rabbitmq-users"]


def _rabbitmqctl(*args: str) -> str:
    return subprocess.run(["rabbitmqctl", "-q", *args], capture_output=True, text=True, timeout=60, check=True).stdout


def _queues_once_imported(vhost: str, expected: int) -> list[dict]:
    """The vhost's queues; import_definitions returns before the import is done, so poll (bounded)."""
    for _ in range(40):
        with contextlib.suppress(subprocess.CalledProcessError):
            listed = json.loads(_rabbitmqctl("list_queues", "-p", vhost, "name", "arguments", "--formatter", "json"))
            if len(listed) >= expected:
                return listed
        time.sleep(0.25)
    return listed


async def _redeclare(url: str, defs: dict) -> None:
    """What the RabbitMQ bus does at start-up: any difference from the import is PRECONDITION_FAILED."""
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        for queue in defs["queues"]:
            await channel.declare_queue(queue["name"], durable=True, arguments=queue["arguments"])
        for exchange in defs["exchanges"]:
            await channel.declare_exchange(exchange["name"], exchange["type"], durable=True)


@pytest.mark.rabbitmq
def test_the_broker_imports_the_definitions_and_the_bus_redeclares_them_unchanged():
    vhost = f"loraserve-defs-{uuid.uuid4().hex[:10]}"
    defs = rabbit_definitions.definitions(load_catalogue().slugs(), vhost=vhost)
    defs["permissions"] = [{"user": "guest", "vhost": vhost, "configure": ".*", "write": ".*", "read": ".*"}]
    try:
        # rabbitmqctl runs as the rabbitmq user: the file must be readable by it (no secrets in it)
        with tempfile.NamedTemporaryFile("w", suffix=".json") as handle:
            handle.write(json.dumps(defs))
            handle.flush()
            os.chmod(handle.name, 0o644)
            _rabbitmqctl("import_definitions", handle.name)
        listed = _queues_once_imported(vhost, len(defs["queues"]))
        assert sorted(q["name"] for q in listed) == sorted(q["name"] for q in defs["queues"])
        asyncio.run(_redeclare(f"amqp://guest:guest@127.0.0.1:5672/{vhost}", defs))
    finally:
        subprocess.run(["rabbitmqctl", "-q", "delete_vhost", vhost], capture_output=True, timeout=60, check=False)
