"""Custom resources, checked without their CRDs: the fields each CRD requires (taken from
the KEDA, RabbitMQ Cluster Operator, MongoDB Community Operator, MinIO Operator and LeaderWorkerSet CRDs)
and, where a custom resource embeds Kubernetes types (pod templates, security contexts,
volume claims), those parts validated against the Kubernetes schemas themselves.
"""
from __future__ import annotations

import re

import kubernetes_validate

K8S_VERSION = "1.33.0"
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def validate_builtin(doc: dict) -> str | None:
    """The first strict-schema problem of a built-in object, or None."""
    try:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        where = "/".join(str(p) for p in exc.path)
        return f"{doc['kind']}/{doc['metadata'].get('name')}: {where}: {exc.message}"
    return None


def _embedded(kind: str, api: str, name: str, spec: dict) -> str | None:
    return validate_builtin({"apiVersion": api, "kind": kind, "metadata": {"name": name}, "spec": spec})


def _pod_template_as_statefulset(name: str, template: dict, extra: dict | None = None) -> str | None:
    spec = {"selector": {"matchLabels": {}}, "template": template, **(extra or {})}
    return _embedded("StatefulSet", "apps/v1", name, spec)


def _need(problems: list[str], where: str, value, kind=None) -> None:
    if value is None or value == "" or value == [] or (kind is not None and not isinstance(value, kind)):
        problems.append(f"{where} is required" + (f" ({kind.__name__})" if kind else ""))


def scaled_object(doc: dict) -> list[str]:
    spec, problems = doc.get("spec", {}), []
    _need(problems, "spec.scaleTargetRef.name", spec.get("scaleTargetRef", {}).get("name"), str)
    _need(problems, "spec.triggers", spec.get("triggers"), list)
    for i, trigger in enumerate(spec.get("triggers") or []):
        _need(problems, f"spec.triggers[{i}].type", trigger.get("type"), str)
        metadata = trigger.get("metadata")
        _need(problems, f"spec.triggers[{i}].metadata", metadata, dict)
        for key, value in (metadata or {}).items():
            if not isinstance(value, str):
                problems.append(f"spec.triggers[{i}].metadata.{key} must be a string, got {value!r}")
        if "authenticationRef" in trigger:
            _need(problems, f"spec.triggers[{i}].authenticationRef.name", trigger["authenticationRef"].get("name"), str)
    low, high = spec.get("minReplicaCount", 0), spec.get("maxReplicaCount", 100)
    if not (isinstance(low, int) and isinstance(high, int) and 0 <= low <= high):
        problems.append(f"replica counts {low}..{high} are not 0 <= min <= max integers")
    return problems


def trigger_authentication(doc: dict) -> list[str]:
    refs, problems = doc.get("spec", {}).get("secretTargetRef"), []
    _need(problems, "spec.secretTargetRef", refs, list)
    for i, ref in enumerate(refs or []):
        for field in ("parameter", "name", "key"):
            _need(problems, f"spec.secretTargetRef[{i}].{field}", ref.get(field), str)
    return problems


def rabbitmq_cluster(doc: dict) -> list[str]:
    spec, problems = doc.get("spec", {}), []
    if not isinstance(spec.get("replicas", 1), int) or spec.get("replicas", 1) % 2 == 0:
        problems.append("spec.replicas must be an odd integer (quorum queues need a majority)")
    template = spec.get("override", {}).get("statefulSet", {}).get("spec", {}).get("template")
    if template is not None:
        error = _pod_template_as_statefulset("rabbitmq-override", template)
        problems += [f"override pod template: {error}"] if error else []
    return problems


def mongodb_community(doc: dict) -> list[str]:
    spec, problems = doc.get("spec", {}), []
    for field in ("security", "type", "users", "version"):
        _need(problems, f"spec.{field}", spec.get(field))
    if spec.get("type") != "ReplicaSet":
        problems.append("spec.type must be ReplicaSet")
    modes = spec.get("security", {}).get("authentication", {}).get("modes") or []
    if not modes or not set(modes) <= {"SCRAM", "SCRAM-SHA-256", "SCRAM-SHA-1"}:
        problems.append(f"spec.security.authentication.modes {modes!r} is not a SCRAM mode list")
    for i, user in enumerate(spec.get("users") or []):
        _need(problems, f"spec.users[{i}].name", user.get("name"), str)
        _need(problems, f"spec.users[{i}].passwordSecretRef.name", user.get("passwordSecretRef", {}).get("name"), str)
        _need(problems, f"spec.users[{i}].roles", user.get("roles"), list)
        problems += [f"spec.users[{i}].roles[{j}] needs name and db" for j, role in enumerate(user.get("roles") or [])
                     if not (role.get("name") and role.get("db"))]
        if not DNS_SUBDOMAIN.match(user.get("scramCredentialsSecretName") or ""):
            problems.append(f"spec.users[{i}].scramCredentialsSecretName must be a DNS subdomain")
    sts = spec.get("statefulSet", {}).get("spec")
    if sts is not None:
        template = sts.get("template", {"spec": {"containers": []}})
        extra = {"volumeClaimTemplates": sts.get("volumeClaimTemplates", [])}
        error = _pod_template_as_statefulset("mongodb-override", template, extra)
        problems += [f"statefulSet override: {error}"] if error else []
    return problems


def tenant(doc: dict) -> list[str]:
    spec, problems = doc.get("spec", {}), []
    _need(problems, "spec.pools", spec.get("pools"), list)
    _need(problems, "spec.configuration.name", spec.get("configuration", {}).get("name"), str)
    for i, pool in enumerate(spec.get("pools") or []):
        for field in ("name", "servers", "volumesPerServer", "volumeClaimTemplate"):
            _need(problems, f"spec.pools[{i}].{field}", pool.get(field))
        if pool.get("servers", 0) * pool.get("volumesPerServer", 0) < 4:
            problems.append(f"spec.pools[{i}] has fewer than 4 drives: no erasure coding")
        claim = pool.get("volumeClaimTemplate", {})
        error = validate_builtin({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                                  "metadata": claim.get("metadata") or {"name": "data"}, "spec": claim.get("spec")})
        pod = {"securityContext": pool.get("securityContext", {}),
               "containers": [{"name": "minio", "securityContext": pool.get("containerSecurityContext", {}),
                               "resources": pool.get("resources", {})}]}
        errors = [error, _embedded("Pod", "v1", "minio-pool", pod)]
        problems += [f"spec.pools[{i}]: {e}" for e in errors if e]
    return problems


LWS_RESTART_POLICIES = {"RecreateGroupOnPodRestart", "None", "Default"}
LWS_STARTUP_POLICIES = {"LeaderCreated", "LeaderReady"}


def leader_worker_set(doc: dict) -> list[str]:
    """leaderworkerset.x-k8s.io/v1 (the LWS CRD, v0.6): a group of `size` pods, one leader and size-1 workers,
    each from a pod template; the templates are validated as Kubernetes pod templates."""
    spec, problems = doc.get("spec", {}), []
    group = spec.get("leaderWorkerTemplate")
    _need(problems, "spec.leaderWorkerTemplate", group, dict)
    group = group if isinstance(group, dict) else {}
    size = group.get("size", 1)
    if not isinstance(size, int) or size < 1:
        problems.append(f"spec.leaderWorkerTemplate.size {size!r} is not a positive integer")
    _need(problems, "spec.leaderWorkerTemplate.workerTemplate", group.get("workerTemplate"), dict)
    if group.get("restartPolicy", "Default") not in LWS_RESTART_POLICIES:
        problems.append(f"spec.leaderWorkerTemplate.restartPolicy must be one of {sorted(LWS_RESTART_POLICIES)}")
    if spec.get("startupPolicy", "LeaderCreated") not in LWS_STARTUP_POLICIES:
        problems.append(f"spec.startupPolicy must be one of {sorted(LWS_STARTUP_POLICIES)}")
    if spec.get("rolloutStrategy", {}).get("type", "RollingUpdate") != "RollingUpdate":
        problems.append("spec.rolloutStrategy.type must be RollingUpdate")
    if not isinstance(spec.get("replicas", 1), int) or spec.get("replicas", 1) < 0:
        problems.append("spec.replicas must be a non-negative integer")
    for field in ("leaderTemplate", "workerTemplate"):
        template = group.get(field)
        if isinstance(template, dict):
            error = _pod_template_as_statefulset(f"lws-{field.lower()}", template)
            problems += [f"spec.leaderWorkerTemplate.{field}: {error}"] if error else []
    return problems


CHECKS = {
    ("keda.sh/v1alpha1", "ScaledObject"): scaled_object,
    ("keda.sh/v1alpha1", "TriggerAuthentication"): trigger_authentication,
    ("rabbitmq.com/v1beta1", "RabbitmqCluster"): rabbitmq_cluster,
    ("mongodbcommunity.mongodb.com/v1", "MongoDBCommunity"): mongodb_community,
    ("minio.min.io/v2", "Tenant"): tenant,
    ("leaderworkerset.x-k8s.io/v1", "LeaderWorkerSet"): leader_worker_set,
}
