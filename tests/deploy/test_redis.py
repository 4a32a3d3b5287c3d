"""Redis, the rate limiters' shared store: every inference-router replica names the same Redis,
which exists, answers on the port the URL names, holds only counters (no persistence), and is
reachable from the inference-router alone — in compose and in every rendered overlay."""
from __future__ import annotations

from itertools import pairwise
from urllib.parse import urlsplit

import pytest

from tests.deploy.manifests import (
    OVERLAYS,
    WORKLOAD_KINDS,
    containers,
    named,
    of_kind,
    pod_environment,
    pod_labels,
    selects,
)
from tests.deploy.test_compose import SERVICES, env
from tests.deploy.test_network_policies import INGRESS_CONTROLLER, INTERNET, PROMETHEUS, STRANGER, Cluster

ROUTER = "inference-router"


def _counters_only(args: list[str]) -> bool:
    """redis-server told to keep nothing on disk: no RDB snapshots, no append-only file."""
    pairs = list(pairwise(args))
    return ("--save", "") in pairs and ("--appendonly", "no") in pairs


def test_compose_routers_reach_one_healthy_redis_that_keeps_no_files():
    users = [name for name in SERVICES if "LORASERVE_REDIS_URL" in env(name)]
    assert ROUTER in users
    for name in users:
        url = urlsplit(env(name)["LORASERVE_REDIS_URL"])
        assert url.scheme == "redis" and url.hostname in SERVICES, name
        redis = SERVICES[url.hostname]
        assert redis["image"].startswith("redis:") and (url.port or 6379) == 6379, name
        assert SERVICES[name]["depends_on"][url.hostname]["condition"] == "service_healthy", name
        assert "redis-cli ping" in " ".join(redis["healthcheck"]["test"])
        assert _counters_only(redis["command"]) and not redis.get("volumes") and not redis.get("ports")


def _redis_behind(docs: list[dict], url: str) -> tuple[dict, int]:
    """The one workload the URL's Service selects, and the container port the Service forwards to."""
    parts = urlsplit(url)
    service = named(docs, "Service", parts.hostname)
    port = next(p for p in service["spec"]["ports"] if p["port"] == (parts.port or 6379))
    selector = {"matchLabels": service["spec"]["selector"]}
    backends = [w for kind in WORKLOAD_KINDS for w in of_kind(docs, kind) if selects(selector, pod_labels(w))]
    assert len(backends) == 1, [w["metadata"]["name"] for w in backends]
    container = containers(backends[0])[0]
    target = port.get("targetPort", port["port"])
    ports = {p.get("name"): p["containerPort"] for p in container["ports"]}
    return backends[0], ports.get(target, target)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_router_replica_shares_one_redis_that_only_the_router_reaches(rendered, overlay):
    docs = rendered(overlay)
    variables, _ = pod_environment(docs, named(docs, "Deployment", ROUTER))
    assert urlsplit(variables["LORASERVE_REDIS_URL"]).scheme == "redis"
    redis, port = _redis_behind(docs, variables["LORASERVE_REDIS_URL"])
    # one pod at a time: two Redis pods would each count half of an org's requests
    assert redis["kind"] == "StatefulSet" and redis["spec"]["replicas"] == 1
    assert not redis["spec"].get("volumeClaimTemplates")
    container = containers(redis)[0]
    assert container["image"].startswith("redis:") and _counters_only(container["args"])
    cluster = Cluster(docs)
    dependency = pod_labels(redis)["loraserve.io/dependency"]
    assert cluster.allows(ROUTER, dependency, port)
    others = [n for n in cluster.pods if n not in (ROUTER, dependency) and cluster.allows(n, dependency, port)]
    assert others == []
    for outsider in (STRANGER, INGRESS_CONTROLLER, PROMETHEUS, INTERNET):
        assert not cluster.allows(outsider, dependency, port), outsider
    assert not cluster.allows(dependency, INTERNET, 443)
    assert not cluster.allows(dependency, "mongodb", 27017)
