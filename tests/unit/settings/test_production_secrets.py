"""A production process never starts with a secret anyone can guess (finding 3 of issue 15)."""
import subprocess
import sys

import pytest

from shared.settings import DEV_SERVICE_TOKEN, Settings, UnsafeSettings

GOOD = "0123456789abcdef" * 4


def production(**values) -> Settings:
    return Settings(env="production", **values)


@pytest.mark.parametrize("token", [None, DEV_SERVICE_TOKEN, "", "short-token-of-31-characters-xx"])
def test_production_refuses_a_missing_default_empty_or_short_token(token):
    settings = production(**({} if token is None else {"service_token": token}))
    with pytest.raises(UnsafeSettings) as refused:
        settings.require_safe()
    message = str(refused.value)
    assert "LORASERVE_SERVICE_TOKEN" in message and "openssl rand -hex 32" in message


def test_a_random_token_starts_and_dev_needs_none():
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
