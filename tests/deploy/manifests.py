"""Rendering the kustomize overlays and reading what an operator relies on out of them."""
from __future__ import annotations

import base64
import re
import shutil
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s"
DEPLOY = ROOT / "deploy"
OVERLAYS = sorted(p.parent.name for p in (K8S / "overlays").glob("*/kustomization.yaml"))

# The public routes (DESIGN.md, seed/lora-serving-api.md): path prefix -> service.
PUBLIC_ROUTES = {
    "/console": "inference-router",  # the web console (static files; it calls /v1 with the user's key)
    "/v1/organization": "inference-router",  # the usage API
    "/v1/files": "file-ingest",
    "/v1/uploads": "file-ingest",
    "/v1/loras": "registry",
    "/v1/events": "registry",
    "/v1/chat": "inference-router",
    "/v1/responses": "inference-router",
    "/v1/messages": "inference-router",
    "/v1/models": "inference-router",
    "/v1/webhook_endpoints": "webhooks",
    "/v1/webhook_event_types": "webhooks",
}
HTTP_PORT = 8000
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "Job")


class KubectlMissing(RuntimeError):
    pass


def render(overlay_dir: Path) -> list[dict]:
    """`kubectl kustomize DIR` parsed into objects; raises with kustomize's own message."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        raise KubectlMissing(
            "kubectl is not on PATH: the deploy tests render k8s/overlays with `kubectl kustomize` "
            "(kubectl >= 1.27 bundles kustomize v5); install kubectl to run them")
    done = subprocess.run([kubectl, "kustomize", str(overlay_dir)], check=False, capture_output=True,
                          text=True, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"kubectl kustomize {overlay_dir} failed:\n{done.stderr}")
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def of_kind(docs: list[dict], kind: str) -> list[dict]:
    return [d for d in docs if d["kind"] == kind]


def named(docs: list[dict], kind: str, name: str) -> dict:
    matches = [d for d in of_kind(docs, kind) if d["metadata"]["name"] == name]
    if len(matches) != 1:
        raise KeyError(f"{len(matches)} {kind} named {name}")
    return matches[0]


def pod_spec(workload: dict) -> dict:
    return workload["spec"]["template"]["spec"]


def pod_labels(workload: dict) -> dict:
    return workload["spec"]["template"]["metadata"].get("labels", {})


def containers(workload: dict) -> list[dict]:
    spec = pod_spec(workload)
    return [*spec.get("initContainers", []), *spec["containers"]]


def selects(selector: dict, labels: dict) -> bool:
    """A Kubernetes label selector (matchLabels + matchExpressions) against a label set."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expr in selector.get("matchExpressions", []):
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        present = key in labels
        ok = {
            "In": present and labels[key] in values,
            "NotIn": not present or labels[key] not in values,
            "Exists": present,
            "DoesNotExist": not present,
        }[op]
        if not ok:
            return False
    return True


def workers(docs: list[dict]) -> list[dict]:
    """Worker pools: one Deployment per catalogue model."""
    return [d for d in of_kind(docs, "Deployment")
            if d["metadata"]["labels"].get("app.kubernetes.io/component") == "worker"]


def pools(docs: list[dict]) -> list[dict]:
    """Worker pools of any shape: Deployments and the LeaderWorkerSets that replace them (components/kimi-multinode)."""
    return workers(docs) + [d for d in of_kind(docs, "LeaderWorkerSet")
                            if d["metadata"]["labels"].get("app.kubernetes.io/component") == "worker"]


def pod_templates(pool: dict) -> list[dict]:
    """The pod templates of a pool: a Deployment's one, a LeaderWorkerSet's leader and worker templates."""
    if pool["kind"] == "LeaderWorkerSet":
        group = pool["spec"]["leaderWorkerTemplate"]
        return [group["leaderTemplate"], group["workerTemplate"]]
    return [pool["spec"]["template"]]


def as_workload(template: dict) -> dict:
    """A pod template wrapped so pod_spec, containers and pod_labels read it like a Deployment's."""
    return {"kind": "PodTemplate", "metadata": template.get("metadata", {}), "spec": {"template": template}}


def serving_container(pool: dict) -> dict:
    """The container that runs `loraserve worker`: the Deployment's, or the LeaderWorkerSet leader's."""
    return pod_templates(pool)[0]["spec"]["containers"][0]


def trigger_counts(trigger: dict, queue: str) -> bool:
    """Whether a KEDA rabbitmq trigger counts this queue: its queueName, or with useRegex a name the management
    API's regex filter (an unanchored PCRE search) matches; simple patterns read the same in Python's re."""
    metadata = trigger["metadata"]
    if metadata.get("useRegex") == "true":
        return re.search(metadata["queueName"], queue) is not None
    return metadata["queueName"] == queue


def http_services(docs: list[dict]) -> list[dict]:
    return [d for d in of_kind(docs, "Deployment") if d not in workers(docs)]


def referenced_secrets(workload: dict) -> set[str]:
    """Every Secret a pod template needs: volumes, envFrom and env valueFrom."""
    spec = pod_spec(workload)
    names = set()
    for volume in spec.get("volumes", []):
        if "secret" in volume:
            names.add(volume["secret"]["secretName"])
        for source in volume.get("projected", {}).get("sources", []):
            if "secret" in source:
                names.add(source["secret"]["name"])
    for container in containers(workload):
        names |= {e["secretRef"]["name"] for e in container.get("envFrom", []) if "secretRef" in e}
        names |= {e["valueFrom"]["secretKeyRef"]["name"] for e in container.get("env", [])
                  if "secretKeyRef" in e.get("valueFrom", {})}
    return names


def referenced_config_maps(workload: dict) -> set[str]:
    spec = pod_spec(workload)
    names = set()
    for volume in spec.get("volumes", []):
        if "configMap" in volume:
            names.add(volume["configMap"]["name"])
        for source in volume.get("projected", {}).get("sources", []):
            if "configMap" in source:
                names.add(source["configMap"]["name"])
    for container in containers(workload):
        names |= {e["configMapRef"]["name"] for e in container.get("envFrom", []) if "configMapRef" in e}
    return names


def custom_resource_secrets(doc: dict) -> set[str]:
    """Secrets the operators' custom resources and the Ingress read."""
    spec = doc.get("spec", {})
    if doc["kind"] == "RabbitmqCluster":
        template = spec.get("override", {}).get("statefulSet", {}).get("spec", {}).get("template", {})
        return referenced_secrets({"spec": {"template": {"spec": {"containers": [], **template.get("spec", {})}}}})
    if doc["kind"] == "MongoDBCommunity":
        return {u["passwordSecretRef"]["name"] for u in spec.get("users", [])}
    if doc["kind"] == "Tenant":
        return {spec["configuration"]["name"], *(u["name"] for u in spec.get("users", []))}
    if doc["kind"] == "TriggerAuthentication":
        return {r["name"] for r in spec.get("secretTargetRef", [])}
    if doc["kind"] == "Ingress":
        return {t["secretName"] for t in spec.get("tls", [])}
    return set()


def pod_environment(docs: list[dict], workload: dict) -> tuple[dict[str, str], set[str]]:
    """The first container's environment as the pod would see it (ConfigMaps and Secrets the overlay renders),
    and the names of the Secrets it reads that the overlay does not render (created by the operator)."""
    config_maps = {c["metadata"]["name"]: c.get("data", {}) for c in of_kind(docs, "ConfigMap")}
    secrets = {s["metadata"]["name"]: {**{k: base64.b64decode(v).decode() for k, v in s.get("data", {}).items()},
                                       **s.get("stringData", {})} for s in of_kind(docs, "Secret")}
    container = pod_spec(workload)["containers"][0]
    env, external = {}, set()
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env |= config_maps[source["configMapRef"]["name"]]
        elif source["secretRef"]["name"] in secrets:
            env |= secrets[source["secretRef"]["name"]]
        else:
            external.add(source["secretRef"]["name"])
    for item in container.get("env", []):
        ref = item.get("valueFrom", {}).get("secretKeyRef")
        if ref is None:
            env[item["name"]] = item.get("value", "")
        elif ref["name"] in secrets:
            env[item["name"]] = secrets[ref["name"]][ref["key"]]
        else:
            external.add(ref["name"])
    return env, external
