"""HTTP services never import torch (start-up time and memory): only the worker does."""
import subprocess
import sys

import pytest

from shared.composition import HTTP_SERVICES


@pytest.mark.parametrize("service", HTTP_SERVICES)
def test_building_an_http_service_imports_no_torch(service, tmp_path):
    code = ("import sys; from shared.composition import service_app; from shared.settings import Settings; "
            f"service_app(Settings(data_dir={str(tmp_path)!r}), {service!r}); "
            "sys.exit(3 if 'torch' in sys.modules else 0)")
    built = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=120)
    assert built.returncode == 0, built.stderr[-2000:] or "torch was imported"


def test_the_worker_is_where_torch_lives(tmp_path):
    code = ("import sys; from shared.composition import service_app; from shared.settings import Settings; "
            f"service_app(Settings(data_dir={str(tmp_path)!r}), 'gpu-worker'); "
            "sys.exit(0 if 'torch' in sys.modules else 3)")
    assert subprocess.run([sys.executable, "-c", code], check=False, timeout=120).returncode == 0
