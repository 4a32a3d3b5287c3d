"""The NetworkPolicies deny by default and allow exactly what the topology needs, checked on
the pod labels each overlay really renders (StatefulSets in dev, operator resources in prod)."""
from __future__ import annotations

import pytest

from tests.deploy.manifests import HTTP_PORT, OVERLAYS, of_kind, pod_labels
from tests.deploy.netpol import Endpoint, allowed

INGRESS_CONTROLLER = Endpoint.pod("ingress-nginx", {"app.kubernetes.io/name": "ingress-nginx"})
KEDA = Endpoint.pod("keda", {"app": "keda-operator"})
PROMETHEUS = Endpoint.pod("monitoring", {"app.kubernetes.io/name": "prometheus"})
KUBE_DNS = Endpoint.pod("kube-system", {"k8s-app": "kube-dns"})
STRANGER = Endpoint.pod("default", {"app": "curl"})
INTERNET = Endpoint.external("93.184.216.34")
DEPENDENCY_PORTS = {"rabbitmq": 5672, "mongodb": 27017, "minio": 9000}


def _dependency_labels(doc: dict) -> dict | None:
    """Pod labels of a dependency, from a StatefulSet or from what an operator copies to its pods."""
    spec = doc.get("spec", {})
    if doc["kind"] == "StatefulSet":
        return pod_labels(doc)
    if doc["kind"] == "RabbitmqCluster":
        return spec["override"]["statefulSet"]["spec"]["template"]["metadata"]["labels"]
    if doc["kind"] == "MongoDBCommunity":
        return spec["statefulSet"]["spec"]["template"]["metadata"]["labels"]
    if doc["kind"] == "Tenant":
        return doc["metadata"]["labels"]
    return None


class Cluster:
    def __init__(self, docs: list[dict]):
        self.policies = of_kind(docs, "NetworkPolicy")
        self.namespace = next(d["metadata"]["name"] for d in docs if d["kind"] == "Namespace")
        self.pods = {d["metadata"]["name"]: self._pod(pod_labels(d)) for d in of_kind(docs, "Deployment")}
        for doc in docs:
            labels = _dependency_labels(doc)
            if labels and "loraserve.io/dependency" in labels:
                self.pods[labels["loraserve.io/dependency"]] = self._pod(labels)

    def _pod(self, labels: dict) -> Endpoint:
        return Endpoint.pod(self.namespace, labels)

    def allows(self, source, target, port: int, protocol: str = "TCP") -> bool:
        source = self.pods[source] if isinstance(source, str) else source
        target = self.pods[target] if isinstance(target, str) else target
        return allowed(self.policies, source, target, port, protocol)


@pytest.fixture(params=OVERLAYS)
def cluster(request, rendered) -> Cluster:
    return Cluster(rendered(request.param))


def test_every_overlay_denies_by_default(rendered):
    for overlay in OVERLAYS:
        defaults = [p for p in of_kind(rendered(overlay), "NetworkPolicy") if p["spec"]["podSelector"] == {}
                    and set(p["spec"]["policyTypes"]) == {"Ingress", "Egress"} and not p["spec"].get("ingress")
                    and not p["spec"].get("egress")]
        assert defaults, overlay


def test_the_ingress_controller_reaches_only_the_public_services(cluster):
    reachable = {name for name in cluster.pods if cluster.allows(INGRESS_CONTROLLER, name, HTTP_PORT)}
    assert reachable == {"file-ingest", "registry", "inference-router", "webhooks"}


def test_internal_apis_are_reachable_only_by_their_callers(cluster):
    assert cluster.allows("registry", "file-ingest", HTTP_PORT)
    assert cluster.allows("inference-router", "registry", HTTP_PORT)
    callers_of_file_ingest = {n for n in cluster.pods if n != "file-ingest" and cluster.allows(n, "file-ingest", HTTP_PORT)}
    callers_of_registry = {n for n in cluster.pods if n != "registry" and cluster.allows(n, "registry", HTTP_PORT)}
    assert callers_of_file_ingest == {"registry"}
    assert callers_of_registry == {"inference-router"}


def test_every_loraserve_pod_reaches_the_bus_the_database_and_the_blob_store(cluster):
    services = [n for n in cluster.pods if n not in DEPENDENCY_PORTS and n != "redis"]  # redis: test_redis.py
    assert len(services) >= 6
    blocked = [(s, d) for s in services for d, port in DEPENDENCY_PORTS.items() if not cluster.allows(s, d, port)]
    assert blocked == []


def test_every_pod_resolves_names(cluster):
    blocked = [n for n in cluster.pods if not cluster.allows(n, KUBE_DNS, 53, "UDP")]
    assert blocked == []


def test_nothing_else_reaches_the_dependencies(cluster):
    for dependency, port in DEPENDENCY_PORTS.items():
        for outsider in (STRANGER, INGRESS_CONTROLLER, INTERNET):
            assert not cluster.allows(outsider, dependency, port), (outsider, dependency)
    assert not cluster.allows("mongodb", "rabbitmq", 5672)
    assert not cluster.allows("minio", "mongodb", 27017)


def test_keda_reads_queue_lengths_and_prometheus_scrapes_metrics(cluster):
    assert cluster.allows(KEDA, "rabbitmq", 15672)
    assert not cluster.allows(KEDA, "rabbitmq", 5672)
    assert cluster.allows(PROMETHEUS, "worker-kimi-k2-tiny", HTTP_PORT)
    assert cluster.allows(PROMETHEUS, "rabbitmq", 15692)


def test_services_cannot_call_out_of_the_cluster(cluster):
    assert not cluster.allows("inference-router", INTERNET, 443)
    assert not cluster.allows("worker-kimi-k2-tiny", INTERNET, 443)
    assert not cluster.allows(STRANGER, "validator", HTTP_PORT)


RECEIVER_REFUSED = ("10.1.2.3", "172.16.0.1", "192.168.1.1", "100.64.0.1", "169.254.169.254", "127.0.0.1")


def test_only_webhooks_reaches_the_internet_and_only_https_to_public_addresses(cluster):
    assert cluster.allows("webhooks", INTERNET, 443)
    assert not cluster.allows("webhooks", INTERNET, 80)
    assert not cluster.allows("webhooks", INTERNET, 8443)
    for address in RECEIVER_REFUSED:
        assert not cluster.allows("webhooks", Endpoint.external(address), 443), address
    assert not cluster.allows("webhooks", "validator", HTTP_PORT)
    assert not cluster.allows("webhooks", "registry", HTTP_PORT)
    services = [n for n in cluster.pods if n not in DEPENDENCY_PORTS and n != "redis"]
    others = [n for n in services if n != "webhooks" and cluster.allows(n, INTERNET, 443)]
    assert others == []


def test_the_evaluator_follows_kubernetes_semantics():
    open_policy = {"metadata": {"namespace": "a"}, "spec": {"podSelector": {}, "policyTypes": ["Ingress"],
                                                              "ingress": [{}]}}
    deny = {"metadata": {"namespace": "a"}, "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}}
    x, y = Endpoint.pod("a", {"app": "x"}), Endpoint.pod("a", {"app": "y"})
    assert allowed([], x, y, 80)
    assert not allowed([deny], x, y, 80)
    assert allowed([open_policy], Endpoint.pod("b", {}), y, 80)
