"""A production process never starts with a secret anyone can guess (issue 15, findings 3 and 8)."""
import subprocess
import sys

import pytest

from shared.settings import DEV_KEY_PEPPER, DEV_SERVICE_TOKEN, Settings, UnsafeSettings

GOOD = "0123456789abcdef" * 4


def production(**values) -> Settings:
    return Settings(env="production", **{"key_pepper": GOOD, **values})


@pytest.mark.parametrize("token", [None, DEV_SERVICE_TOKEN, "", "short-token-of-31-characters-xx"])
def test_production_refuses_a_missing_default_empty_or_short_token(token):
    settings = production(**({} if token is None else {"service_token": token}))
    with pytest.raises(UnsafeSettings) as refused:
        settings.require_safe()
    message = str(refused.value)
    assert "LORASERVE_SERVICE_TOKEN" in message and "openssl rand -hex 32" in message


@pytest.mark.parametrize("pepper", [DEV_KEY_PEPPER, "", "short"])
def test_production_refuses_a_default_empty_or_short_key_pepper(pepper):
    settings = production(service_token=GOOD, key_pepper=pepper)
    with pytest.raises(UnsafeSettings, match="LORASERVE_KEY_PEPPER"):
        settings.require_safe()
    settings.require_safe(key_pepper=False)  # a process that checks no API keys does not need it


def test_random_secrets_start_and_dev_needs_none():
    production(service_token=GOOD).require_safe()
    Settings().require_safe()


def test_serve_exits_with_how_to_set_the_token(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "LORASERVE_ENV": "production", "LORASERVE_DATA_DIR": str(tmp_path),
           "LORASERVE_SERVICE_TOKEN": DEV_SERVICE_TOKEN}
    done = subprocess.run([sys.executable, "-m", "shared.cli.main", "serve", "registry"], env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 1
    assert "LORASERVE_SERVICE_TOKEN" in done.stderr and "openssl rand -hex 32" in done.stderr
    assert "Traceback" not in done.stderr


def run_cli(tmp_path, *args, **env):
    base = {"PATH": "/usr/bin:/bin", "LORASERVE_DATA_DIR": str(tmp_path), **env}
    return subprocess.run([sys.executable, "-m", "shared.cli.main", *args], env=base, capture_output=True,
                          text=True, timeout=120, check=False)


def test_admin_keys_needs_the_pepper_in_production_and_warns_without_one_in_dev(tmp_path):
    refused = run_cli(tmp_path, "admin", "keys", "create", "--org", "acme", LORASERVE_ENV="production")
    assert refused.returncode == 1 and "LORASERVE_KEY_PEPPER" in refused.stderr
    assert "LORASERVE_SERVICE_TOKEN" not in refused.stderr and not (tmp_path / "keys.json").exists()
    made = run_cli(tmp_path, "admin", "keys", "create", "--org", "acme", LORASERVE_ENV="production",
                   LORASERVE_KEY_PEPPER=GOOD)
    assert made.returncode == 0 and "API key (shown once)" in made.stdout
    dev = run_cli(tmp_path / "dev", "admin", "keys", "create", "--org", "acme")
    assert dev.returncode == 0 and "development pepper" in dev.stderr
    listed = run_cli(tmp_path, "admin", "keys", "list", LORASERVE_KEY_PEPPER=GOOD)
    assert "\tacme\t…" in listed.stdout
