"""The vLLM engine tests: run inside the vLLM environment (deploy/ensure-vllm.sh) by `make test`.

    $(deploy/ensure-vllm.sh)/bin/python -m pytest -o addopts= tests/vllm

Models are tiny DeepSeek-V3 variants built from tests/vllm/models.json with a fixed seed (no
download); each engine starts once per test module.
"""
import os
from pathlib import Path

import pytest
import pytest_asyncio

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


# each test module names its model (MODEL); its engine starts once for the module
@pytest.fixture(scope="module")
def entry(request):
    from shared.catalogue.catalogue import load_catalogue

    return load_catalogue().get(request.module.MODEL)


@pytest.fixture(scope="module")
def options(data_dir):
    from services.gpu_worker.engines.vllm_engine.model_dir import VllmOptions

    # two adapters registered at once (one kept free for load-before-evict): four adapters force evictions
    return VllmOptions(slots=2, cpu_adapters=3, max_batch=8, data_dir=data_dir)


@pytest.fixture(scope="module")
def model_dir(entry, options):
    from services.gpu_worker.engines.vllm_engine.model_dir import model_directory

    return model_directory(entry, options)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def engine(entry, options):
    from services.gpu_worker.engines.vllm_engine.engine import VllmEngine

    engine = VllmEngine(entry, options)
    await engine.start()
    yield engine
    await engine.stop()
