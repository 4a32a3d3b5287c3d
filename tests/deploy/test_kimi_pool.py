"""The Kimi-K2.6 pool is a real vLLM deployment: the GPU image on one 8-GPU node, weights read-only from a
claim mounted where the catalogue's engine looks, shared memory for its tensor-parallel workers, probes that
outlast a load of many minutes. Which models have a pool is configuration (LORASERVE_DEPLOYED_MODELS)."""
from __future__ import annotations

import pytest

from tests.deploy.deployed import CATALOGUE, deployed_models
from tests.deploy.manifests import (
    OVERLAYS,
    named,
    of_kind,
    pod_templates,
    pools,
    serving_container,
)
from tests.deploy.test_compose import env as compose_env

KIMI = CATALOGUE.get("moonshotai/Kimi-K2.6")
WORKER_DRAIN_SECONDS = 30  # the worker drains running requests this long on SIGTERM, then aborts them
GiB = 1024**3


def quantity_bytes(quantity: str) -> int:
    units = {"Ki": 1024, "Mi": 1024**2, "Gi": GiB, "Ti": 1024 * GiB}
    suffix = quantity[-2:]
    return int(quantity[:-2]) * units[suffix] if suffix in units else int(quantity)


def env_of(container: dict) -> dict[str, str]:
    return {e["name"]: e.get("value") for e in container.get("env", [])}


def claims_mounted(template: dict) -> dict[str, tuple[dict, dict]]:
    """mount path -> (volume, mount) for every PersistentVolumeClaim the pod's first container mounts."""
    volumes = {v["name"]: v for v in template["spec"].get("volumes", [])}
    return {m["mountPath"]: (volumes[m["name"]], m) for m in template["spec"]["containers"][0].get("volumeMounts", [])
            if "persistentVolumeClaim" in volumes.get(m["name"], {})}


def test_the_kimi_pool_runs_vllm_from_the_gpu_image_on_one_8_gpu_node(rendered):
    pool = named(rendered("prod"), "Deployment", "worker-kimi-k2-6")
    container = serving_container(pool)
    assert container["image"].split("/")[-1].startswith("loraserve-gpu:")
    assert container["args"] == ["worker", "--model", KIMI.id, "--engine", "vllm"]
    assert KIMI.engine.name == "vllm"
    gpus = int(container["resources"]["limits"]["nvidia.com/gpu"])
    assert gpus == 8 == KIMI.engine.tensor_parallel_size * KIMI.engine.pipeline_parallel_size
    assert pool["spec"]["strategy"]["rollingUpdate"]["maxSurge"] == 0, "a surge pod needs a second free node"


def test_the_weights_come_read_only_from_a_claim_where_the_engine_looks(rendered):
    docs = rendered("prod")
    template = pod_templates(named(docs, "Deployment", "worker-kimi-k2-6"))[0]
    container = serving_container(named(docs, "Deployment", "worker-kimi-k2-6"))
    model_path = env_of(container).get("LORASERVE_WORKER_MODEL_PATH") or KIMI.engine.model_path
    assert model_path == KIMI.engine.model_path
    volume, mount = claims_mounted(template)[model_path]
    assert mount.get("readOnly") is True and volume["persistentVolumeClaim"].get("readOnly") is True
    claim = named(docs, "PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"])
    assert claim["spec"]["accessModes"] == ["ReadOnlyMany"], "every replica mounts the same weights"
    assert quantity_bytes(claim["spec"]["resources"]["requests"]["storage"]) >= 600 * GiB
    assert env_of(container).get("HF_HUB_OFFLINE") == "1"


def test_tensor_parallel_workers_get_a_large_memory_backed_dev_shm(rendered):
    template = pod_templates(named(rendered("prod"), "Deployment", "worker-kimi-k2-6"))[0]
    volumes = {v["name"]: v for v in template["spec"]["volumes"]}
    shm = [volumes[m["name"]] for m in template["spec"]["containers"][0]["volumeMounts"] if m["mountPath"] == "/dev/shm"]
    assert len(shm) == 1 and shm[0]["emptyDir"]["medium"] == "Memory"
    assert quantity_bytes(shm[0]["emptyDir"]["sizeLimit"]) >= 16 * GiB


def test_the_probes_outlast_a_load_of_many_minutes_and_shutdown_outlasts_the_drain(rendered):
    pool = named(rendered("prod"), "Deployment", "worker-kimi-k2-6")
    container = serving_container(pool)
    startup = container["startupProbe"]
    assert startup["httpGet"]["path"] == "/healthz"
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 3600
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert pod_templates(pool)[0]["spec"]["terminationGracePeriodSeconds"] >= 2 * WORKER_DRAIN_SECONDS
    assert pool["spec"]["progressDeadlineSeconds"] >= startup["periodSeconds"] * startup["failureThreshold"]


def test_prod_deploys_kimi_and_dev_and_compose_keep_the_catalogue_default(monkeypatch, rendered):
    assert KIMI.deployed is False, "the catalogue's default: no pool unless an environment says so"
    assert KIMI.id in deployed_models(monkeypatch, rendered("prod"))
    assert KIMI.id not in deployed_models(monkeypatch, rendered("dev"))
    assert "LORASERVE_DEPLOYED_MODELS" not in compose_env("validator")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_model_an_environment_deploys_has_a_pool_for_its_slug(monkeypatch, rendered, overlay):
    docs = rendered(overlay)
    slugs = {p["metadata"]["labels"]["loraserve.io/model"] for p in pools(docs)}
    deployed = deployed_models(monkeypatch, docs)
    assert deployed, "an environment that serves nothing"
    assert {CATALOGUE.get(m).slug for m in deployed} <= slugs


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_claim_a_running_pool_mounts_is_rendered(monkeypatch, rendered, overlay):
    # a pool of a model the environment does not deploy stays at zero: its claim need not exist there
    docs = rendered(overlay)
    claims = {c["metadata"]["name"] for c in of_kind(docs, "PersistentVolumeClaim")}
    deployed_slugs = {CATALOGUE.get(m).slug for m in deployed_models(monkeypatch, docs)}
    missing = [(pool["metadata"]["name"], volume["persistentVolumeClaim"]["claimName"])
               for pool in pools(docs) if pool["metadata"]["labels"]["loraserve.io/model"] in deployed_slugs
               for template in pod_templates(pool) for volume, _ in claims_mounted(template).values()
               if volume["persistentVolumeClaim"]["claimName"] not in claims]
    assert missing == []

