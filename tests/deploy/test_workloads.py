"""What an operator relies on in every overlay: probes, limits, a locked-down pod, a PDB, Services
that select something, config the services understand, and an Ingress that never reaches /internal."""
from __future__ import annotations

import pytest

from shared.composition import HTTP_SERVICES
from shared.settings import Settings
from tests.deploy.manifests import (
    HTTP_PORT,
    OVERLAYS,
    PUBLIC_ROUTES,
    WORKLOAD_KINDS,
    containers,
    custom_resource_secrets,
    http_services,
    named,
    of_kind,
    pod_labels,
    pod_spec,
    referenced_config_maps,
    referenced_secrets,
    selects,
)

SETTINGS_ENV = {f"LORASERVE_{name.upper()}" for name in Settings.model_fields}
# Secrets prod reads from outside the repository (README: "Secrets"); dev generates all of its own.
EXTERNAL_SECRETS = {
    "dev": set(),
    "prod": {"loraserve-credentials", "loraserve-api-keys", "loraserve-key-pepper", "loraserve-redis", "loraserve-rabbitmq-users", "loraserve-keda-rabbitmq",
             "loraserve-mongodb-password", "loraserve-minio-env", "loraserve-minio-user", "loraserve-webhook-secrets",
             "mongodb-admin-loraserve", "loraserve-tls"},  # the last two: written by the operator, cert-manager
}


def _name(doc: dict) -> str:
    return f"{doc['kind']}/{doc['metadata']['name']}"


def deployment_problems(deployment: dict) -> list[str]:
    spec, problems = pod_spec(deployment), []
    pod_security = spec.get("securityContext", {})
    if not pod_security.get("runAsNonRoot") or pod_security.get("runAsUser", 0) == 0:
        problems.append("pod may run as root")
    if pod_security.get("seccompProfile", {}).get("type") != "RuntimeDefault":
        problems.append("no RuntimeDefault seccomp profile")
    if spec.get("automountServiceAccountToken") is not False:
        problems.append("mounts a service account token")
    for container in containers(deployment):
        problems += [f"{container['name']}: {p}" for p in container_problems(container, spec)]
    return problems


def container_problems(container: dict, spec: dict) -> list[str]:
    problems, security = [], container.get("securityContext", {})
    if security.get("allowPrivilegeEscalation") is not False or security.get("privileged"):
        problems.append("may escalate privileges")
    if security.get("readOnlyRootFilesystem") is not True:
        problems.append("writable root filesystem")
    if security.get("capabilities", {}).get("drop") != ["ALL"]:
        problems.append("keeps Linux capabilities")
    for kind in ("requests", "limits"):
        missing = {"cpu", "memory"} - set(container.get("resources", {}).get(kind, {}))
        problems += [f"no {kind} for {', '.join(sorted(missing))}"] if missing else []
    ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
    expected = {"startupProbe": "/healthz", "livenessProbe": "/healthz", "readinessProbe": "/readyz"}
    for probe, path in expected.items():
        get = container.get(probe, {}).get("httpGet", {})
        if get.get("path") != path or ports.get(get.get("port"), get.get("port")) != HTTP_PORT:
            problems.append(f"{probe} is not GET {path} on port {HTTP_PORT}")
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    for mount in container.get("volumeMounts", []):
        if mount["mountPath"] in ("/tmp", "/data") and "emptyDir" not in volumes.get(mount["name"], {}):
            problems.append(f"{mount['mountPath']} is not an emptyDir")
    if not {"/tmp", "/data"} <= {m["mountPath"] for m in container.get("volumeMounts", [])}:
        problems.append("no writable /tmp and /data")
    return problems


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_deployment_is_probed_limited_and_locked_down(rendered, overlay):
    deployments = of_kind(rendered(overlay), "Deployment")
    assert deployments
    problems = [f"{_name(d)}: {p}" for d in deployments for p in deployment_problems(d)]
    assert problems == []


def test_the_checks_catch_a_pod_that_runs_as_root_without_probes(rendered):
    deployment = of_kind(rendered("dev"), "Deployment")[0]
    broken = {**deployment, "spec": {**deployment["spec"], "template": {"spec": {
        "containers": [{"name": "app", "image": "x:1"}], "volumes": []}}}}
    problems = deployment_problems(broken)
    assert "pod may run as root" in problems
    assert any("readinessProbe is not GET /readyz" in p for p in problems)


RESTRICTED_VOLUMES = {"emptyDir", "configMap", "secret", "projected", "persistentVolumeClaim", "downwardAPI"}


def restricted_problems(workload: dict) -> list[str]:
    """The `restricted` Pod Security Standard: what admission rejects in a namespace that enforces it."""
    spec, problems = pod_spec(workload), []
    pod_security = spec.get("securityContext", {})
    for container in containers(workload):
        security = {**pod_security, **container.get("securityContext", {})}
        if not security.get("runAsNonRoot") or security.get("runAsUser") == 0:
            problems.append(f"{container['name']}: runAsNonRoot")
        if security.get("seccompProfile", {}).get("type") not in ("RuntimeDefault", "Localhost"):
            problems.append(f"{container['name']}: seccompProfile")
        if security.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{container['name']}: allowPrivilegeEscalation")
        if security.get("capabilities", {}).get("drop") != ["ALL"]:
            problems.append(f"{container['name']}: capabilities")
    for volume in spec.get("volumes", []):
        if not set(volume) - {"name"} <= RESTRICTED_VOLUMES:
            problems.append(f"volume {volume['name']}")
    return problems


def test_every_pod_in_the_dev_namespace_passes_its_restricted_admission(rendered):
    docs = rendered("dev")
    namespace = of_kind(docs, "Namespace")[0]
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    workloads = [w for kind in WORKLOAD_KINDS for w in of_kind(docs, kind)]
    assert {w["kind"] for w in workloads} >= {"Deployment", "StatefulSet"}
    assert [f"{_name(w)}: {p}" for w in workloads for p in restricted_problems(w)] == []


def test_loraserve_pods_in_prod_meet_the_restricted_standard(rendered):
    deployments = of_kind(rendered("prod"), "Deployment")
    assert [f"{_name(d)}: {p}" for d in deployments for p in restricted_problems(d)] == []


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_deployment_has_a_pdb_and_its_own_service_account(rendered, overlay):
    docs = rendered(overlay)
    accounts = {d["metadata"]["name"]: d for d in of_kind(docs, "ServiceAccount")}
    for deployment in of_kind(docs, "Deployment"):
        budgets = [p for p in of_kind(docs, "PodDisruptionBudget") if selects(p["spec"]["selector"], pod_labels(deployment))]
        assert len(budgets) == 1, _name(deployment)
        account = accounts[pod_spec(deployment)["serviceAccountName"]]
        assert account["automountServiceAccountToken"] is False


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_service_and_pdb_selects_pods_of_a_workload(rendered, overlay):
    docs = rendered(overlay)
    templates = [pod_labels(w) for kind in WORKLOAD_KINDS for w in of_kind(docs, kind)]
    services = [s for s in of_kind(docs, "Service") if not any(selects({"matchLabels": s["spec"]["selector"]}, t)
                                                              for t in templates)]
    budgets = [p for p in of_kind(docs, "PodDisruptionBudget") if not any(selects(p["spec"]["selector"], t)
                                                                           for t in templates)]
    assert services == [] and budgets == []


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_http_service_runs_once_with_its_serve_command(rendered, overlay):
    commands = sorted(tuple(containers(d)[0]["args"]) for d in http_services(rendered(overlay)))
    assert commands == sorted(("serve", name) for name in HTTP_SERVICES)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_loraserve_variable_is_a_setting_the_services_read(rendered, overlay):
    docs = rendered(overlay)
    names = {k for c in of_kind(docs, "ConfigMap") for k in c.get("data", {}) if k.startswith("LORASERVE_")}
    names |= {k for s in of_kind(docs, "Secret") for k in {**s.get("data", {}), **s.get("stringData", {})}
              if k.startswith("LORASERVE_")}
    names |= {e["name"] for d in of_kind(docs, "Deployment") for c in containers(d) for e in c.get("env", [])
              if e["name"].startswith("LORASERVE_")}
    assert names and names <= SETTINGS_ENV, sorted(names - SETTINGS_ENV)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_secret_and_config_map_a_pod_needs_is_there_or_documented(rendered, overlay):
    docs = rendered(overlay)
    workloads = [w for kind in WORKLOAD_KINDS for w in of_kind(docs, kind)]
    secrets = set().union(*(referenced_secrets(w) for w in workloads))
    secrets |= set().union(*(custom_resource_secrets(d) for d in docs))
    config_maps = set().union(*(referenced_config_maps(w) for w in workloads))
    assert secrets - {s["metadata"]["name"] for s in of_kind(docs, "Secret")} == EXTERNAL_SECRETS[overlay]
    assert config_maps <= {c["metadata"]["name"] for c in of_kind(docs, "ConfigMap")}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_ingress_routes_the_public_api_and_never_internal(rendered, overlay):
    docs = rendered(overlay)
    routes = {}
    for ingress in of_kind(docs, "Ingress"):
        for rule in ingress["spec"]["rules"]:
            assert rule.get("host"), "an Ingress rule without a host answers every hostname"
            for path in rule["http"]["paths"]:
                routes[path["path"]] = path["backend"]["service"]
    assert not [p for p in routes if p.startswith("/internal") or p in ("/", "")]
    assert {p: b["name"] for p, b in routes.items()} == PUBLIC_ROUTES
    for backend in routes.values():
        service = named(docs, "Service", backend["name"])
        assert backend["port"]["name"] in {p["name"] for p in service["spec"]["ports"]}
    assert not [i for i in of_kind(docs, "Ingress") if "defaultBackend" in i["spec"]]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_only_public_services_carry_the_key_hashes(rendered, overlay):
    docs = rendered(overlay)
    with_keys = {d["metadata"]["name"] for d in of_kind(docs, "Deployment")
                 if any(s.startswith("loraserve-api-keys") for s in referenced_secrets(d))}
    assert with_keys == set(PUBLIC_ROUTES.values())


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_image_is_pinned(rendered, overlay):
    docs = rendered(overlay)
    images = [c["image"] for kind in WORKLOAD_KINDS for w in of_kind(docs, kind) for c in containers(w)]
    images += [d["spec"]["image"] for d in docs if d["kind"] in ("RabbitmqCluster", "Tenant")]
    unpinned = [i for i in images if ":" not in i.rsplit("/", 1)[-1] or i.endswith(":latest")]
    assert images and unpinned == []
