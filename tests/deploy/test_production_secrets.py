"""Every process that runs in production mode gets secrets its start-up check accepts (issue 15, finding 3):
compose's defaults, the dev overlay's generated Secrets, and the Secrets the README has operators create for prod.
The services with public routes check API keys and need the key pepper too (finding 8)."""
from __future__ import annotations

import base64
import os
import re

import pytest

from shared.settings import Settings
from tests.deploy.manifests import OVERLAYS, ROOT, of_kind, pod_environment, pod_labels
from tests.deploy.test_compose import env as compose_env
from tests.deploy.test_compose import loraserve_services

README = (ROOT / "README.md").read_text()
PUBLIC_LABEL = "loraserve.io/public"


WEBHOOKS = "webhooks"  # the one service that seals secrets: it needs LORASERVE_WEBHOOK_SECRETS_KEY
RANDOM_32_BYTES_BASE64 = base64.b64encode(bytes(range(32))).decode()  # what `openssl rand -base64 32` gives


def problems_with(monkeypatch, variables: dict[str, str], key_pepper: bool = True,
                  webhook_secrets_key: bool = False) -> list[str]:
    """What the process's start-up check says about exactly these LORASERVE_* variables."""
    for name in [n for n in os.environ if n.startswith("LORASERVE_")]:
        monkeypatch.delenv(name)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    return Settings().secret_problems(key_pepper=key_pepper, webhook_secrets_key=webhook_secrets_key)


def readme_generates(secret: str, variable: str) -> bool:
    """The README's `create secret generic SECRET` command sets VARIABLE to `openssl rand -hex N` (2N >= 32)."""
    command = re.search(rf"create secret generic {secret} ((?:.*\\\n)*.*)", README)
    if command is None:
        return False
    value = re.search(rf"--from-literal={variable}=\"([^\"]+)\"", command.group(1))
    if value is None:
        return False
    exported = re.fullmatch(r"\$(\w+)", value.group(1))
    if exported:
        value = re.search(rf"export {exported.group(1)}=\"([^\"]+)\"", README)
    generated = value and re.fullmatch(r"\$\(openssl rand -(hex|base64) (\d+)\)", value.group(1))
    if not generated:
        return False
    if generated.group(1) == "base64":  # a key, not a password: exactly 32 bytes
        return int(generated.group(2)) == 32
    return int(generated.group(2)) * 2 >= 32


@pytest.mark.parametrize("service", loraserve_services())
def test_every_compose_service_starts_with_its_default_secrets(monkeypatch, service):
    variables = compose_env(service)
    assert variables["LORASERVE_ENV"] == "production"
    assert problems_with(monkeypatch, variables, webhook_secrets_key=service == WEBHOOKS) == []


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_deployment_gets_secrets_that_pass_the_start_up_check(monkeypatch, rendered, overlay):
    docs, checked = rendered(overlay), 0
    for deployment in of_kind(docs, "Deployment"):
        variables, external = pod_environment(docs, deployment)
        if variables.get("LORASERVE_ENV") != "production":
            continue
        checked += 1
        public = pod_labels(deployment).get(PUBLIC_LABEL) == "true"
        if not public:  # the pepper goes only where keys are checked (a worker runs users' adapters)
            assert "LORASERVE_KEY_PEPPER" not in variables, deployment["metadata"]["name"]
            assert not [s for s in external if s.startswith("loraserve-key-pepper")], deployment["metadata"]["name"]
        needed = ("LORASERVE_SERVICE_TOKEN", "LORASERVE_KEY_PEPPER") if public else ("LORASERVE_SERVICE_TOKEN",)
        if "LORASERVE_REDIS_URL" in variables:  # a process given Redis's URL needs its password
            needed += ("LORASERVE_REDIS_PASSWORD",)
        seals = deployment["metadata"]["name"] == WEBHOOKS
        if seals:
            needed += ("LORASERVE_WEBHOOK_SECRETS_KEY",)
        else:  # the sealing key goes only where secrets are sealed
            assert "LORASERVE_WEBHOOK_SECRETS_KEY" not in variables, deployment["metadata"]["name"]
        for variable in needed:
            if variable not in variables:
                assert any(readme_generates(s, variable) for s in external), (deployment["metadata"]["name"], variable)
                variables[variable] = (RANDOM_32_BYTES_BASE64 if variable == "LORASERVE_WEBHOOK_SECRETS_KEY"
                                       else "x" * 64)  # what `openssl rand -hex 32` gives
        assert problems_with(monkeypatch, variables, key_pepper=public,
                             webhook_secrets_key=seals) == [], deployment["metadata"]["name"]
    assert checked >= 4


def test_the_check_catches_the_old_placeholders(monkeypatch):
    for token in ("dev-service-token", "compose-service-token"):
        assert problems_with(monkeypatch, {"LORASERVE_ENV": "production", "LORASERVE_SERVICE_TOKEN": token},
                             key_pepper=False)
    assert problems_with(monkeypatch, {"LORASERVE_ENV": "production", "LORASERVE_SERVICE_TOKEN": "x" * 64})
    assert not readme_generates("loraserve-credentials", "LORASERVE_NOT_A_SETTING")


def test_the_webhooks_service_refuses_a_missing_dev_or_malformed_sealing_key(monkeypatch):
    base = {"LORASERVE_ENV": "production", "LORASERVE_SERVICE_TOKEN": "x" * 64}
    for key in (None, "bG9yYXNlcnZlIGRldiB3ZWJob29rIHNlY3JldHMhISE=", "x" * 64,
                base64.b64encode(b"16 bytes only!!!").decode()):
        variables = base if key is None else {**base, "LORASERVE_WEBHOOK_SECRETS_KEY": key}
        assert problems_with(monkeypatch, variables, key_pepper=False, webhook_secrets_key=True), key
    good = {**base, "LORASERVE_WEBHOOK_SECRETS_KEY": RANDOM_32_BYTES_BASE64}
    assert problems_with(monkeypatch, good, key_pepper=False, webhook_secrets_key=True) == []
