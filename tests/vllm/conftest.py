"""The vLLM engine tests: run inside the vLLM environment (deploy/ensure-vllm.sh) by `make test`.

    $(deploy/ensure-vllm.sh)/bin/python -m pytest -o addopts= tests/vllm

Models are tiny DeepSeek-V3 variants built from tests/vllm/models.json with a fixed seed (no
download); each engine starts once per test module.
"""
import os
from pathlib import Path

import pytest

CATALOGUE = Path(__file__).with_name("models.json")
os.environ["LORASERVE_CATALOGUE_FILE"] = str(CATALOGUE)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")

try:
    import vllm  # noqa: F401
except ImportError as exc:  # a missing engine is a failure, never a skip
    raise pytest.UsageError(f"tests/vllm must run in the vLLM environment (deploy/ensure-vllm.sh): {exc}") from exc

DENSE = "loraserve-test/dsv3-dense"
MOE = "loraserve-test/dsv3-moe"


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("vllm-data")
