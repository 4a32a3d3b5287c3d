"""deploy/compose.yaml: every service and a CPU worker, healthy start order, named volumes, settings the
services read, credentials that agree across containers, a gateway routing like the Ingress, and
Debian's `docker-compose config` accepting the file (`make test` installs docker-compose where missing)."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from urllib.parse import urlsplit

import pytest
import yaml

from shared.catalogue.catalogue import load_catalogue
from shared.composition import HTTP_SERVICES
from shared.settings import Settings
from tests.deploy.manifests import DEPLOY, PUBLIC_ROUTES

COMPOSE = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
SERVICES = COMPOSE["services"]
SETTINGS_ENV = {f"LORASERVE_{name.upper()}" for name in Settings.model_fields}
INTERPOLATION = re.compile(r"\$\{(\w+)(?::?-([^}]*))?\}")


def resolved(value) -> str:
    """A compose value with ${VAR:-default} replaced by its default, as on a machine with no .env."""
    return INTERPOLATION.sub(lambda m: m.group(2) or "", str(value)).replace("$$", "$")


def env(service: str) -> dict[str, str]:
    return {k: resolved(v) for k, v in SERVICES[service].get("environment", {}).items()}


def one_shot(service: str) -> bool:
    return SERVICES[service].get("restart") == "no"


def loraserve_services() -> list[str]:
    return [n for n, s in SERVICES.items() if s.get("build", {}).get("dockerfile") == "deploy/Dockerfile"]


def test_every_http_service_and_a_worker_per_cpu_model_run():
    commands = {tuple(SERVICES[n].get("command", [])): n for n in loraserve_services() if not one_shot(n)}
    for service in HTTP_SERVICES:
        assert ("serve", service) in commands
    local_models = [m for m in load_catalogue().models if m.engine.name == "torch"]
    for model in local_models:
        assert ("worker", "--model", model.id) in commands
        assert commands[("worker", "--model", model.id)] == f"worker-{model.slug}"
    assert {"rabbitmq", "mongodb", "minio", "redis", "gateway"} <= set(SERVICES)


def test_every_long_running_service_has_a_health_check():
    unchecked = [n for n, s in SERVICES.items() if not one_shot(n)
                 and (not s.get("healthcheck", {}).get("test") or s["healthcheck"].get("disable"))]
    assert unchecked == []


def test_start_order_waits_for_health_and_only_on_real_services():
    for name, service in SERVICES.items():
        for dependency, condition in service.get("depends_on", {}).items():
            assert dependency in SERVICES, f"{name} depends on unknown {dependency}"
            expected = "service_completed_successfully" if one_shot(dependency) else "service_healthy"
            assert condition["condition"] == expected, (name, dependency)
    for name in loraserve_services():
        if name != "create-api-key":
            assert {"rabbitmq", "mongodb", "minio"} <= set(SERVICES[name]["depends_on"]), name


def test_state_lives_in_declared_named_volumes():
    declared = set(COMPOSE.get("volumes", {}))
    used = {v.split(":")[0] for s in SERVICES.values() for v in s.get("volumes", []) if not v.startswith(".")}
    assert used == declared
    assert {"rabbitmq", "mongodb", "minio", "worker-kimi-k2-tiny"} <= {
        n for n, s in SERVICES.items() if any(v.split(":")[0] in declared for v in s.get("volumes", []))}
    bind_sources = {v.split(":")[0] for s in SERVICES.values() for v in s.get("volumes", []) if v.startswith(".")}
    assert all((DEPLOY / src).is_file() for src in bind_sources)


def test_services_get_production_settings_they_understand():
    for name in loraserve_services():
        variables = env(name)
        assert set(variables) - {"LORASERVE_FIRST_ORG"} <= SETTINGS_ENV, name
        assert variables["LORASERVE_ENV"] == "production"
        assert {"LORASERVE_AMQP_URL", "LORASERVE_MONGO_URL", "LORASERVE_S3_ENDPOINT"} <= set(variables)
        assert variables["LORASERVE_FILE_INGEST_URL"] == f"http://file-ingest:{variables['LORASERVE_PORT']}"
        assert variables["LORASERVE_REGISTRY_URL"] == f"http://registry:{variables['LORASERVE_PORT']}"


def test_health_checks_ask_the_port_the_service_listens_on():
    for name in loraserve_services():
        if not one_shot(name):
            check = " ".join(SERVICES[name]["healthcheck"]["test"])
            assert f"127.0.0.1:{env(name)['LORASERVE_PORT']}/readyz" in check, name


def test_credentials_agree_between_the_services_and_the_servers_they_log_into():
    variables = env("registry")
    amqp = urlsplit(variables["LORASERVE_AMQP_URL"])
    users = json.loads((DEPLOY / "rabbitmq" / "users.compose.json").read_text())
    assert {"name": amqp.username, "password": amqp.password} in [
        {"name": u["name"], "password": u["password"]} for u in users["users"]]
    assert amqp.username in {p["user"] for p in users["permissions"] if p["vhost"] == "/"}
    mongo, mongo_env = urlsplit(variables["LORASERVE_MONGO_URL"]), env("mongodb")
    assert (mongo.username, mongo.password) == (mongo_env["MONGO_INITDB_ROOT_USERNAME"],
                                                mongo_env["MONGO_INITDB_ROOT_PASSWORD"])
    minio_env = env("minio")
    assert (variables["LORASERVE_S3_ACCESS_KEY"], variables["LORASERVE_S3_SECRET_KEY"]) == (
        minio_env["MINIO_ROOT_USER"], minio_env["MINIO_ROOT_PASSWORD"])
    assert len(minio_env["MINIO_ROOT_PASSWORD"]) >= 8, "MinIO refuses shorter root passwords"


def test_the_first_api_key_is_created_once():
    service = SERVICES["create-api-key"]
    assert one_shot("create-api-key")
    script = " ".join(service["command"])
    assert "loraserve admin keys list" in script and "|| loraserve admin keys create" in script
    assert env("create-api-key")["LORASERVE_IDENTITY_BACKEND"] == "mongo"
    assert {env(n)["LORASERVE_IDENTITY_BACKEND"] for n in loraserve_services()} == {"mongo"}


def _gateway_routes() -> tuple[dict[str, str], str]:
    conf = (DEPLOY / "gateway" / "nginx.conf").read_text()
    upstreams = dict(re.findall(r"upstream (\w+) \{ server ([\w-]+):\d+; \}", conf))
    routes = {path: upstreams[up] for path, up in re.findall(r"location (/\S+) \{ proxy_pass http://(\w+); \}", conf)}
    return routes, conf


def test_the_gateway_routes_like_the_ingress_and_never_internal():
    routes, conf = _gateway_routes()
    assert routes == PUBLIC_ROUTES
    assert re.search(r"location /internal \{ return 404; \}", conf)
    assert set(routes.values()) <= set(SERVICES)
    published = SERVICES["gateway"]["ports"]
    assert published == ["127.0.0.1:8080:8080"] and "listen 8080;" in conf


@pytest.mark.parametrize("name", ["rabbitmq", "mongodb", "minio", "redis", "gateway"])
def test_dependency_images_are_pinned(name):
    image = SERVICES[name]["image"]
    assert ":" in image and not image.endswith(":latest")


def test_docker_compose_accepts_the_file_and_names_every_service():
    binary = shutil.which("docker-compose")
    assert binary, "docker-compose is missing: `make test` installs it with deploy/ensure-tools.sh"
    checked = subprocess.run([binary, "-f", str(DEPLOY / "compose.yaml"), "config", "--services"],
                             check=False, capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stderr
    assert set(checked.stdout.split()) == set(SERVICES)
