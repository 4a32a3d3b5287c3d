"""A production process given a Redis URL refuses to start without Redis's password (an open Redis lets
anything that reaches it reset every org's rate limits); dev and processes without a URL need none."""
import subprocess
import sys

import pytest

from shared.settings import Settings, UnsafeSettings
from tests.fixtures.secrets import PRODUCTION_SECRETS

GOOD = "0123456789abcdef" * 4
URL = "redis://redis:6379/0"


def production(**values) -> Settings:
    return Settings(env="production", service_token=GOOD, key_pepper=GOOD, **values)


@pytest.mark.parametrize("password", ["", "short-redis-password"])
def test_production_refuses_a_redis_url_without_a_password_or_with_a_short_one(password):
    with pytest.raises(UnsafeSettings, match="LORASERVE_REDIS_PASSWORD") as refused:
        production(redis_url=URL, redis_password=password).require_safe()
    assert "openssl rand -hex 32" in str(refused.value)


@pytest.mark.parametrize("values", [{"redis_url": URL, "redis_password": GOOD},
                                    {"redis_url": f"redis://:{GOOD}@redis:6379/0"}, {}])
def test_production_starts_with_a_password_in_the_setting_or_the_url_or_without_redis(values):
    production(**values).require_safe()


def test_dev_needs_no_redis_password():
    Settings(redis_url=URL).require_safe()


def test_serve_exits_saying_which_setting_is_missing(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "LORASERVE_ENV": "production", "LORASERVE_DATA_DIR": str(tmp_path),
           "LORASERVE_REDIS_URL": URL, **PRODUCTION_SECRETS}
    done = subprocess.run([sys.executable, "-m", "shared.cli.main", "serve", "inference-router"], env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 1
    assert "LORASERVE_REDIS_URL is set but Redis has no password" in done.stderr
    assert "LORASERVE_REDIS_PASSWORD" in done.stderr and "Traceback" not in done.stderr
