"""Redis, the rate limiters' shared store: every replica of the services with public routes (the
inference-router's inference limits, the management limits of the others) names the same Redis,
which exists, answers on the port the URL names, holds only counters (no persistence), and is
reachable from those services alone — in compose and in every rendered overlay. Redis requires
a password from the same Secret the router sends (prod's comes from the operator, never the repo),
its probes authenticate, and nothing but Redis and its clients holds the password."""
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
    pod_spec,
    selects,
)
from tests.deploy.test_compose import SERVICES, env, resolved
from tests.deploy.test_network_policies import INGRESS_CONTROLLER, INTERNET, PROMETHEUS, STRANGER, Cluster
from tests.deploy.test_production_secrets import readme_generates

ROUTER = "inference-router"
REDIS_CLIENTS = (ROUTER, "registry", "file-ingest", "webhooks")


def _counters_only(args: list[str]) -> bool:
    """redis-server told to keep nothing on disk: no RDB snapshots, no append-only file."""
    pairs = list(pairwise(args))
    return ("--save", "") in pairs and ("--appendonly", "no") in pairs


def _required_password(args: list[str]) -> str | None:
    """What redis-server is told to require (--requirepass VALUE), or None."""
    return next((value for flag, value in pairwise(args) if flag == "--requirepass"), None)


def _authenticates(probe_command: list[str]) -> bool:
    """A redis-cli ping that passes only on PONG (redis-cli exits 0 on NOAUTH); it reads REDISCLI_AUTH."""
    command = " ".join(probe_command)
    return "redis-cli ping" in command and "grep -qx PONG" in command


def test_compose_routers_reach_one_healthy_redis_that_keeps_no_files():
    users = [name for name in SERVICES if "LORASERVE_REDIS_URL" in env(name)]
    assert set(REDIS_CLIENTS) <= set(users)
    for name in users:
        url = urlsplit(env(name)["LORASERVE_REDIS_URL"])
        assert url.scheme == "redis" and url.hostname in SERVICES, name
        redis = SERVICES[url.hostname]
        assert redis["image"].startswith("redis:") and (url.port or 6379) == 6379, name
        assert SERVICES[name]["depends_on"][url.hostname]["condition"] == "service_healthy", name
        assert "redis-cli ping" in " ".join(redis["healthcheck"]["test"])
        assert _counters_only(redis["command"]) and not redis.get("volumes") and not redis.get("ports")
        password = resolved(_required_password(redis["command"]))
        assert password and env(url.hostname)["REDISCLI_AUTH"] == password
        assert _authenticates(redis["healthcheck"]["test"])
        assert (url.password or env(name)["LORASERVE_REDIS_PASSWORD"]) == password, name


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
def test_every_limiting_replica_shares_one_redis_that_only_they_reach(rendered, overlay):
    docs = rendered(overlay)
    urls = {pod_environment(docs, named(docs, "Deployment", name))[0]["LORASERVE_REDIS_URL"] for name in REDIS_CLIENTS}
    assert len(urls) == 1 and urlsplit(next(iter(urls))).scheme == "redis"
    redis, port = _redis_behind(docs, next(iter(urls)))
    # one pod at a time: two Redis pods would each count half of an org's requests
    assert redis["kind"] == "StatefulSet" and redis["spec"]["replicas"] == 1
    assert not redis["spec"].get("volumeClaimTemplates")
    container = containers(redis)[0]
    assert container["image"].startswith("redis:") and _counters_only(container["args"])
    cluster = Cluster(docs)
    dependency = pod_labels(redis)["loraserve.io/dependency"]
    assert all(cluster.allows(name, dependency, port) for name in REDIS_CLIENTS)
    others = [n for n in cluster.pods
              if n not in (*REDIS_CLIENTS, dependency) and cluster.allows(n, dependency, port)]
    assert others == []
    for outsider in (STRANGER, INGRESS_CONTROLLER, PROMETHEUS, INTERNET):
        assert not cluster.allows(outsider, dependency, port), outsider
    assert not cluster.allows(dependency, INTERNET, 443)
    assert not cluster.allows(dependency, "mongodb", 27017)


def _secret_ref(container: dict, variable: str) -> tuple[str, str] | None:
    """(Secret, key) a container's environment variable comes from, or None."""
    item = next((e for e in container.get("env", []) if e["name"] == variable), None)
    ref = (item or {}).get("valueFrom", {}).get("secretKeyRef")
    return (ref["name"], ref["key"]) if ref else None


def _password_source(redis: dict) -> tuple[str, str]:
    """The Secret key redis-server's --requirepass comes from: "$(VAR)" and VAR a secretKeyRef, so neither
    the spec nor `kubectl describe` shows the password."""
    container = containers(redis)[0]
    required = _required_password(container["args"])
    assert required and required.startswith("$(") and required.endswith(")"), required
    source = _secret_ref(container, required[2:-1])
    assert source is not None, f"{required} is not read from a Secret"
    return source


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_redis_requires_the_password_its_clients_send_and_its_probes_authenticate(rendered, overlay):
    docs = rendered(overlay)
    redis, _ = _redis_behind(docs, "redis://redis:6379")
    source = _password_source(redis)
    container = containers(redis)[0]
    assert _secret_ref(container, "REDISCLI_AUTH") == source
    for probe in ("startupProbe", "readinessProbe"):
        assert _authenticates(container[probe]["exec"]["command"]), probe
    for name in REDIS_CLIENTS:
        client = pod_spec(named(docs, "Deployment", name))["containers"][0]
        assert _secret_ref(client, "LORASERVE_REDIS_PASSWORD") == source, name
    rendered_secrets = {s["metadata"]["name"] for s in of_kind(docs, "Secret")}
    if overlay == "prod":  # no default password: the operator makes it as the README says
        assert source[0] not in rendered_secrets
        assert readme_generates(source[0], source[1])
    else:
        assert source[0] in rendered_secrets


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_only_redis_and_the_pods_that_may_reach_it_hold_its_url_or_password(rendered, overlay):
    docs = rendered(overlay)
    redis, port = _redis_behind(docs, "redis://redis:6379")
    secret = _password_source(redis)[0]
    cluster = Cluster(docs)
    for workload in [w for kind in WORKLOAD_KINDS for w in of_kind(docs, kind) if w is not redis]:
        variables, _ = pod_environment(docs, workload)
        refs = {ref for c in containers(workload) for item in c.get("env", [])
                if (ref := item.get("valueFrom", {}).get("secretKeyRef", {}).get("name"))}
        holds = "LORASERVE_REDIS_URL" in variables or secret in refs
        name = workload["metadata"]["name"]
        assert not holds or (workload["kind"] == "Deployment" and cluster.allows(name, "redis", port)), name
