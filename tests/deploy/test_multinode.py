"""components/kimi-multinode: the prod overlay with the Kimi-K2.6 pool as a LeaderWorkerSet of 2-node groups
(tensor parallel 8 x pipeline parallel 2 over Ray), rendered the way the README has operators add it."""
from __future__ import annotations

import json
import shutil

import pytest
import yaml

from shared.catalogue.engines import EngineSpec, with_overrides
from tests.deploy import crds
from tests.deploy.deployed import CATALOGUE
from tests.deploy.manifests import (
    K8S,
    KubectlMissing,
    as_workload,
    named,
    of_kind,
    pod_templates,
    pools,
    referenced_config_maps,
    referenced_secrets,
    render,
    selects,
)
from tests.deploy.netpol import Endpoint, allowed
from tests.deploy.test_workloads import EXTERNAL_SECRETS, container_problems, restricted_problems

COMPONENT = "../../components/kimi-multinode"
KIMI = CATALOGUE.get("moonshotai/Kimi-K2.6")
LWS = ("LeaderWorkerSet", "worker-kimi-k2-6")


@pytest.fixture(scope="module")
def docs(tmp_path_factory) -> list[dict]:
    """A copy of k8s/ whose prod overlay lists the component last, rendered."""
    copy = tmp_path_factory.mktemp("multinode") / "k8s"
    shutil.copytree(K8S, copy)
    kustomization = copy / "overlays" / "prod" / "kustomization.yaml"
    overlay = yaml.safe_load(kustomization.read_text())
    overlay["components"].append(COMPONENT)
    kustomization.write_text(yaml.safe_dump(overlay))
    try:
        return render(kustomization.parent)
    except KubectlMissing as exc:
        pytest.fail(str(exc), pytrace=False)


def leader_engine(leader: dict) -> EngineSpec:
    """Kimi's engine as the leader's worker runs it: the catalogue's, with LORASERVE_WORKER_ENGINE_ARGS merged."""
    raw = next(e["value"] for e in leader["containers"][0]["env"] if e["name"] == "LORASERVE_WORKER_ENGINE_ARGS")
    return with_overrides(KIMI.engine, json.loads(raw))


def test_the_deployment_is_replaced_by_a_leader_worker_set_the_scaled_object_scales(docs):
    lws = named(docs, *LWS)
    assert [d["metadata"]["name"] for d in of_kind(docs, "Deployment") if d["metadata"]["name"] == LWS[1]] == []
    assert [p["metadata"]["name"] for p in pools(docs)].count(LWS[1]) == 1
    target = named(docs, "ScaledObject", LWS[1])["spec"]["scaleTargetRef"]
    assert target == {"apiVersion": "leaderworkerset.x-k8s.io/v1", "kind": "LeaderWorkerSet", "name": LWS[1]}
    assert "replicas" not in lws["spec"], "a fixed replica count fights KEDA on every apply"
    assert crds.leader_worker_set(lws) == []


def test_each_group_spans_two_8_gpu_nodes_for_two_pipeline_stages(docs):
    lws = named(docs, *LWS)
    leader, worker = (t["spec"] for t in pod_templates(lws))
    engine = leader_engine(leader)
    size = lws["spec"]["leaderWorkerTemplate"]["size"]
    gpus = {int(t["containers"][0]["resources"]["limits"]["nvidia.com/gpu"]) for t in (leader, worker)}
    assert engine.pipeline_parallel_size == size == 2 and gpus == {engine.tensor_parallel_size} == {8}
    assert engine.extra_args["distributed_executor_backend"] == "ray"
    assert lws["spec"]["leaderWorkerTemplate"]["restartPolicy"] == "RecreateGroupOnPodRestart"


def test_the_leader_changes_nothing_of_kimis_engine_but_its_pipeline_stages_and_executor(docs):
    leader = pod_templates(named(docs, *LWS))[0]["spec"]
    engine = leader_engine(leader)
    assert engine.model_copy(update={"pipeline_parallel_size": 1, "extra_args": KIMI.engine.extra_args}) == KIMI.engine
    assert not any(e["name"] == "LORASERVE_CATALOGUE_FILE" for e in leader["containers"][0]["env"])


def test_the_leader_runs_the_vllm_worker_after_the_group_joins_its_ray_head(docs):
    leader, worker = (t["spec"]["containers"][0] for t in pod_templates(named(docs, *LWS)))
    script = leader["args"][0]
    assert script.index("ray start --head") < script.index("LWS_GROUP_SIZE") < script.index("exec loraserve worker")
    assert f"exec loraserve worker --model {KIMI.id} --engine vllm" in script
    assert 'ray start --address="$LWS_LEADER_ADDRESS:6379"' in worker["args"][0] and "--block" in worker["args"][0]
    for container in (leader, worker):
        assert container["image"].split("/")[-1].startswith("loraserve-gpu:")
        assert {e["name"]: e.get("value") for e in container["env"]}["HF_HUB_OFFLINE"] == "1"


def test_both_pods_mount_the_weights_read_only_where_the_engine_looks(docs):
    for template in pod_templates(named(docs, *LWS)):
        volumes = {v["name"]: v for v in template["spec"]["volumes"]}
        mounts = {m["mountPath"]: m for m in template["spec"]["containers"][0]["volumeMounts"]}
        weights = mounts[KIMI.engine.model_path]
        claim = volumes[weights["name"]]["persistentVolumeClaim"]
        assert weights["readOnly"] and claim["readOnly"]
        assert named(docs, "PersistentVolumeClaim", claim["claimName"])["spec"]["accessModes"] == ["ReadOnlyMany"]
        assert volumes[mounts["/dev/shm"]["name"]]["emptyDir"]["medium"] == "Memory"


def test_every_pod_of_a_group_is_locked_down_limited_and_on_gpu_nodes(docs, rendered):
    placed_like = pod_templates(named(rendered("prod"), "Deployment", LWS[1]))[0]["spec"]
    problems = []
    for template in pod_templates(named(docs, *LWS)):
        workload, spec = as_workload(template), template["spec"]
        problems += restricted_problems(workload)
        for key in ("nodeSelector", "tolerations", "affinity"):
            problems += [f"{key} differs from components/gpu-scheduling"] if spec.get(key) != placed_like.get(key) else []
        if spec.get("automountServiceAccountToken") is not False:
            problems.append("mounts a service account token")
    leader = pod_templates(named(docs, *LWS))[0]
    problems += container_problems(leader["spec"]["containers"][0], leader["spec"])
    assert problems == []


def test_the_service_selects_the_leader_and_the_pdb_the_group(docs):
    leader, worker = (t["metadata"]["labels"] | {"leaderworkerset.sigs.k8s.io/worker-index": i}
                      for t, i in zip(pod_templates(named(docs, *LWS)), ("0", "1")))
    service = {"matchLabels": named(docs, "Service", LWS[1])["spec"]["selector"]}
    budget = named(docs, "PodDisruptionBudget", LWS[1])["spec"]["selector"]
    assert selects(service, leader) and not selects(service, worker)
    assert selects(budget, leader) and selects(budget, worker)


def test_every_secret_and_config_map_the_group_needs_is_there_or_documented(docs):
    secrets, config_maps = set(), set()
    for template in pod_templates(named(docs, *LWS)):
        secrets |= referenced_secrets(as_workload(template))
        config_maps |= referenced_config_maps(as_workload(template))
    assert secrets - {s["metadata"]["name"] for s in of_kind(docs, "Secret")} <= EXTERNAL_SECRETS["prod"]
    assert config_maps <= {c["metadata"]["name"] for c in of_kind(docs, "ConfigMap")}
    assert "loraserve-config" not in config_maps, "the generated ConfigMap's hashed name was not substituted"


def test_the_group_reaches_itself_on_rays_ports_and_nothing_else_does(docs):
    policies, namespace = of_kind(docs, "NetworkPolicy"), named(docs, "Namespace", "loraserve")["metadata"]["name"]
    leader, worker = (Endpoint.pod(namespace, t["metadata"]["labels"]) for t in pod_templates(named(docs, *LWS)))
    tiny = Endpoint.pod(namespace, pod_templates(named(docs, "Deployment", "worker-kimi-k2-tiny"))[0]["metadata"]["labels"])
    for port in (6379, 8265, 29500, 41234):
        assert allowed(policies, worker, leader, port) and allowed(policies, leader, worker, port)
        assert not allowed(policies, tiny, leader, port)


def test_the_crd_check_catches_a_broken_leader_worker_set():
    broken = {"apiVersion": "leaderworkerset.x-k8s.io/v1", "kind": "LeaderWorkerSet", "metadata": {"name": "x"},
              "spec": {"leaderWorkerTemplate": {"size": 0, "restartPolicy": "Always",
                                                "leaderTemplate": {"spec": {"containers": [{"name": "x", "imag": "x:1"}]}}}}}
    problems = crds.leader_worker_set(broken)
    assert any("size" in p for p in problems) and any("workerTemplate is required" in p for p in problems)
    assert any("restartPolicy" in p for p in problems) and any("leaderTemplate" in p for p in problems)

