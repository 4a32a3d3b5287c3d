"""Every overlay renders, and every object in it is valid for Kubernetes 1.33 (strict)."""
from __future__ import annotations

import kubernetes_validate
import pytest

from tests.deploy import crds
from tests.deploy.manifests import OVERLAYS


def test_the_dev_and_prod_overlays_exist():
    assert {"dev", "prod"} <= set(OVERLAYS)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_overlay_renders_namespaced_named_objects(rendered, overlay):
    docs = rendered(overlay)
    namespaces = [d["metadata"]["name"] for d in docs if d["kind"] == "Namespace"]
    assert len(namespaces) == 1
    outside = [f"{d['kind']}/{d['metadata']['name']}" for d in docs
               if d["kind"] != "Namespace" and d["metadata"].get("namespace") != namespaces[0]]
    assert outside == []


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_builtin_object_validates_strictly(rendered, overlay):
    problems = []
    for doc in rendered(overlay):
        try:
            kubernetes_validate.validate(doc, crds.K8S_VERSION, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            if (doc["apiVersion"], doc["kind"]) not in crds.CHECKS:
                problems.append(f"{doc['apiVersion']} {doc['kind']}: neither built in nor a known custom resource")
        except kubernetes_validate.ValidationError:
            problems.append(crds.validate_builtin(doc))
    assert problems == []


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_custom_resource_has_what_its_crd_requires(rendered, overlay):
    problems = []
    for doc in rendered(overlay):
        check = crds.CHECKS.get((doc["apiVersion"], doc["kind"]))
        if check:
            problems += [f"{doc['kind']}/{doc['metadata']['name']}: {p}" for p in check(doc)]
    assert problems == []


def test_prod_runs_each_dependency_through_its_operator(rendered):
    docs = rendered("prod")
    assert {"RabbitmqCluster", "MongoDBCommunity", "Tenant"} <= {d["kind"] for d in docs}
    # the one plain StatefulSet: Redis, holding only rate limit counters, nothing on a volume
    statefulsets = [d for d in docs if d["kind"] == "StatefulSet"]
    assert [d["metadata"]["name"] for d in statefulsets] == ["redis"]
    assert not statefulsets[0]["spec"].get("volumeClaimTemplates")


def test_dev_runs_each_dependency_as_a_plain_statefulset(rendered):
    docs = rendered("dev")
    statefulsets = {d["metadata"]["labels"].get("loraserve.io/dependency") for d in docs if d["kind"] == "StatefulSet"}
    assert statefulsets == {"rabbitmq", "mongodb", "minio", "redis"}
    assert not {"RabbitmqCluster", "MongoDBCommunity", "Tenant"} & {d["kind"] for d in docs}


def test_the_crd_checks_catch_a_broken_custom_resource():
    broken = {"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject", "metadata": {"name": "x"},
              "spec": {"scaleTargetRef": {}, "triggers": [{"type": "rabbitmq", "metadata": {"value": 5}}]}}
    problems = crds.scaled_object(broken)
    assert any("scaleTargetRef.name" in p for p in problems)
    assert any("metadata.value must be a string" in p for p in problems)
