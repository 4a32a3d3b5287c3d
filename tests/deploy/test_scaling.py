"""One worker pool per catalogue model, scaled by KEDA on that model's queues (never by an HPA);
the HTTP services scaled by HPAs in prod; GPU pools placed on GPU nodes."""
from __future__ import annotations

import pytest

from shared.catalogue.catalogue import load_catalogue
from shared.contracts.topology import gpu_validation_queue, inference_queue
from tests.deploy.deployed import deployed_models
from tests.deploy.manifests import (
    OVERLAYS,
    containers,
    http_services,
    named,
    of_kind,
    pod_spec,
    trigger_counts,
    workers,
)

CATALOGUE = load_catalogue()


def _scaled_objects_for(docs: list[dict], deployment: dict) -> list[dict]:
    return [s for s in of_kind(docs, "ScaledObject")
            if s["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
            and s["spec"]["scaleTargetRef"].get("kind", "Deployment") == "Deployment"]


def _hpa_targets(docs: list[dict]) -> set[str]:
    return {h["spec"]["scaleTargetRef"]["name"] for h in of_kind(docs, "HorizontalPodAutoscaler")}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_catalogue_model_has_one_pool_named_from_its_slug(rendered, overlay):
    pools = {d["metadata"]["labels"]["loraserve.io/model"]: d for d in workers(rendered(overlay))}
    assert sorted(pools) == sorted(CATALOGUE.slugs())
    for model in CATALOGUE.models:
        pool = pools[model.slug]
        assert pool["metadata"]["name"] == f"worker-{model.slug}"
        args = containers(pool)[0]["args"]
        assert args[:3] == ["worker", "--model", model.id]
        # an engine named here must be the one the validator checks adapters against (the catalogue's)
        assert args[3:] in ([], ["--engine", model.engine.name])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_pool_scales_on_its_own_queues_over_http_and_never_by_hpa(rendered, overlay):
    docs = rendered(overlay)
    for pool in workers(docs):
        slug = pool["metadata"]["labels"]["loraserve.io/model"]
        scaled = _scaled_objects_for(docs, pool)
        assert [s["metadata"]["name"] for s in scaled] == [f"worker-{slug}"]
        triggers = scaled[0]["spec"]["triggers"]
        assert {t["type"] for t in triggers} == {"rabbitmq"}
        # http counts unacknowledged (in-flight) jobs too; amqp would scale a busy pool in
        assert {t["metadata"]["protocol"] for t in triggers} == {"http"}
        assert {t["metadata"]["mode"] for t in triggers} == {"QueueLength"}
        # one trigger per queue kind (the inference one also counts the affinity queues: test_affinity_deploy)
        assert len(triggers) == 2
        for queue in (inference_queue(slug), gpu_validation_queue(slug)):
            assert len([t for t in triggers if trigger_counts(t, queue)]) == 1, queue
        assert pool["metadata"]["name"] not in _hpa_targets(docs)
        assert "replicas" not in pool["spec"], "a fixed replica count fights KEDA on every apply"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_trigger_authenticates_with_a_host_secret(rendered, overlay):
    docs = rendered(overlay)
    for scaled in of_kind(docs, "ScaledObject"):
        for trigger in scaled["spec"]["triggers"]:
            auth = named(docs, "TriggerAuthentication", trigger["authenticationRef"]["name"])
            assert "host" in {r["parameter"] for r in auth["spec"]["secretTargetRef"]}
            assert "host" not in trigger["metadata"], "credentials belong in the TriggerAuthentication"


def _paused(scaled: dict) -> bool:
    annotations = scaled["metadata"].get("annotations", {})
    return annotations.get("autoscaling.keda.sh/paused") == "true" or "autoscaling.keda.sh/paused-replicas" in annotations


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_a_pool_is_paused_exactly_where_its_model_is_not_deployed(monkeypatch, rendered, overlay):
    # dev has no GPUs: Kimi-K2.6 is not deployed there and its pool stays at zero; prod runs it from zero
    docs = rendered(overlay)
    deployed = deployed_models(monkeypatch, docs)
    for model in CATALOGUE.models:
        scaled = named(docs, "ScaledObject", f"worker-{model.slug}")
        assert _paused(scaled) is (model.id not in deployed), (overlay, model.id)
        assert scaled["spec"].get("minReplicaCount", 0) >= 0


def test_the_kimi_pool_scales_from_zero_in_prod_and_is_paused_in_dev(rendered):
    prod = named(rendered("prod"), "ScaledObject", "worker-kimi-k2-6")
    dev = named(rendered("dev"), "ScaledObject", "worker-kimi-k2-6")
    assert not _paused(prod) and prod["spec"]["maxReplicaCount"] >= 1
    assert dev["metadata"]["annotations"]["autoscaling.keda.sh/paused-replicas"] == "0"


def test_prod_scales_every_http_service_with_an_hpa(rendered):
    docs = rendered("prod")
    services = {d["metadata"]["name"] for d in http_services(docs)}
    assert _hpa_targets(docs) == services
    assert [d["metadata"]["name"] for d in http_services(docs) if "replicas" in d["spec"]] == []


def test_prod_puts_gpu_pools_on_gpu_nodes(rendered):
    gpu_pools = [p for p in workers(rendered("prod"))
                 if "nvidia.com/gpu" in containers(p)[0]["resources"].get("limits", {})]
    assert gpu_pools, "the Kimi-K2.6 pool needs GPUs"
    for pool in gpu_pools:
        spec, resources = pod_spec(pool), containers(pool)[0]["resources"]
        assert resources["requests"]["nvidia.com/gpu"] == resources["limits"]["nvidia.com/gpu"]
        assert any(t["key"] == "nvidia.com/gpu" for t in spec.get("tolerations", []))
        assert spec.get("nodeSelector"), "GPU pools must be pinned to GPU nodes"
        assert pool["metadata"]["labels"]["loraserve.io/accelerator"] == "nvidia-gpu"


def test_cpu_pools_never_request_gpus(rendered):
    for pool in workers(rendered("prod")):
        if CATALOGUE.by_slug(pool["metadata"]["labels"]["loraserve.io/model"]).engine.name == "torch":
            assert "nvidia.com/gpu" not in containers(pool)[0]["resources"]["limits"]
            assert not pod_spec(pool).get("tolerations")
