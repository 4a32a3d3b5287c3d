"""Adapter-affinity routing, deployment side: every broker (local, compose, dev and prod clusters) runs the
consistent-hash exchange plugin the generated definitions need, and KEDA counts a model's affinity queues in
its inference backlog."""
from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import pytest
import yaml

from shared.catalogue.catalogue import load_catalogue
from shared.contracts.topology import (
    AFFINITY_SEATS,
    ExchangeType,
    affinity_exchange,
    affinity_queue,
    gpu_validation_queue,
    inference_queue,
    topology,
)
from tests.deploy.manifests import DEPLOY, K8S, OVERLAYS, named, of_kind, trigger_counts

PLUGIN = "rabbitmq_consistent_hash_exchange"
PLUGINS_PATH = "/etc/rabbitmq/enabled_plugins"
ENSURE = DEPLOY / "ensure-rabbitmq.sh"
SLUGS = load_catalogue().slugs()
# seats of a model's ring: the first, one in the middle, the last
WORKER_IDS = (0, 7, AFFINITY_SEATS - 1)


def _plugins(text: str) -> list[str]:
    """The plugin names of an enabled_plugins file (one Erlang list term: `[a,b,c].`)."""
    term = text.strip()
    assert term.startswith("[") and term.endswith("]."), f"not an Erlang list term: {term!r}"
    return [name.strip() for name in term[1:-2].split(",")]


def _affinity_queue_name(slug: str, seat: int) -> str:
    return affinity_queue(slug, seat, wait_ms=1000, max_ready=8).name


DEFINITIONS = [DEPLOY / "rabbitmq" / "definitions.json", K8S / "base" / "rabbitmq" / "definitions.json"]


@pytest.mark.parametrize("path", DEFINITIONS, ids=["compose", "k8s"])
def test_the_definitions_declare_each_models_affinity_exchange_as_consistent_hash(path):
    exchanges = {e["name"]: e for e in json.loads(path.read_text())["exchanges"]}
    for slug in SLUGS:
        exchange = exchanges[affinity_exchange(slug)]
        assert exchange["type"] == ExchangeType.CONSISTENT_HASH.value == "x-consistent-hash"
        assert exchange["durable"] and not exchange["auto_delete"]


def test_compose_rabbitmq_runs_the_plugin_next_to_management_and_prometheus():
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    mounts = dict(v.split(":")[:2] for v in compose["services"]["rabbitmq"]["volumes"])
    assert mounts["./rabbitmq/enabled_plugins"] == PLUGINS_PATH
    plugins = _plugins((DEPLOY / "rabbitmq" / "enabled_plugins").read_text())
    # the file replaces the image's list: management (UI, KEDA's http API) and prometheus (metrics) stay on
    assert {PLUGIN, "rabbitmq_management", "rabbitmq_prometheus"} <= set(plugins)
    assert (K8S / "base" / "rabbitmq" / "enabled_plugins").read_text() == (
        DEPLOY / "rabbitmq" / "enabled_plugins").read_text()


def test_the_dev_cluster_mounts_the_plugins_file(rendered):
    docs = rendered("dev")
    pod = named(docs, "StatefulSet", "rabbitmq")["spec"]["template"]["spec"]
    mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["mountPath"] == PLUGINS_PATH)
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    config_map = named(docs, "ConfigMap", volume["configMap"]["name"])
    assert PLUGIN in _plugins(config_map["data"][mount["subPath"]])


def test_the_prod_cluster_asks_the_operator_for_the_plugin(rendered):
    cluster = of_kind(rendered("prod"), "RabbitmqCluster")[0]
    assert PLUGIN in cluster["spec"]["rabbitmq"]["additionalPlugins"]


def _all_queue_names() -> list[str]:
    topo = topology(SLUGS)
    names = [q.name for q in (*topo.queues, *topo.dead_letter_queues)]
    return names + [_affinity_queue_name(slug, worker) for slug in SLUGS for worker in WORKER_IDS]


def _inference_queues(slug: str) -> set[str]:
    return {inference_queue(slug), *(_affinity_queue_name(slug, worker) for worker in WORKER_IDS)}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_pools_inference_trigger_sums_its_shared_and_affinity_queues_only(rendered, overlay):
    for slug in SLUGS:
        scaled = named(rendered(overlay), "ScaledObject", f"worker-{slug}")
        triggers = {t["name"]: t for t in scaled["spec"]["triggers"]}
        inference = triggers["inference"]
        assert inference["metadata"]["useRegex"] == "true" and inference["metadata"]["operation"] == "sum"
        counted = {q for q in _all_queue_names() if trigger_counts(inference, q)}
        # never the dead letters nor another model's or kind's queues
        assert counted == _inference_queues(slug), slug
        assert not trigger_counts(inference, topology(SLUGS).queue(inference_queue(slug)).dlq_name)
        counted = {q for q in _all_queue_names() if trigger_counts(triggers["gpu-validation"], q)}
        assert counted == {gpu_validation_queue(slug)}


# -- deploy/ensure-rabbitmq.sh against the broker already listening (the CI case) ----------------------------
def _stub_plugins_cli(directory: Path, is_enabled_rc: int, enable_rc: int = 0) -> Path:
    """A rabbitmq-plugins that logs its arguments and answers is_enabled / enable with these exit codes."""
    log = directory / "calls"
    script = directory / "rabbitmq-plugins"
    script.write_text(f"""#!/bin/sh
echo "$*" >> {log}
case "$*" in *is_enabled*) exit {is_enabled_rc};; *enable*) exit {enable_rc};; esac
""")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return log


def _ensure(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["/bin/bash", str(ENSURE)], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PATH": str(path)}, check=False)


@pytest.mark.rabbitmq
def test_ensure_rabbitmq_only_asks_when_the_plugin_already_runs(tmp_path):
    log = _stub_plugins_cli(tmp_path, is_enabled_rc=0)
    assert _ensure(tmp_path).returncode == 0
    assert log.read_text().split("\n")[:-1] == [f"-q is_enabled {PLUGIN}"]


@pytest.mark.rabbitmq
def test_ensure_rabbitmq_enables_the_plugin_on_the_running_broker(tmp_path):
    log = _stub_plugins_cli(tmp_path, is_enabled_rc=69)
    assert _ensure(tmp_path).returncode == 0
    assert log.read_text().split("\n")[:-1] == [f"-q is_enabled {PLUGIN}", f"-q enable {PLUGIN}"]


@pytest.mark.rabbitmq
def test_ensure_rabbitmq_fails_naming_the_plugin_it_could_not_enable(tmp_path):
    _stub_plugins_cli(tmp_path, is_enabled_rc=69, enable_rc=2)
    done = _ensure(tmp_path)
    assert done.returncode != 0 and f"rabbitmq-plugins enable {PLUGIN}" in done.stderr


@pytest.mark.rabbitmq
def test_ensure_rabbitmq_names_the_plugin_for_a_broker_it_cannot_manage(tmp_path):
    done = _ensure(tmp_path)  # no rabbitmq-plugins on PATH: someone else's broker
    assert done.returncode == 0 and PLUGIN in done.stderr and "not on this machine" in done.stderr
