import asyncio

import pytest

from shared.identity.store import FileIdentityStore
from tests.e2e.topology import start_topology
from tests.fixtures.secrets import KEY_PEPPER

PROMPT = "Tell me about centrifuges."
PHRASE = "spin spin hooray"


@pytest.fixture(scope="session")
def trained_adapter(tmp_path_factory):
    from services.gpu_worker.models.tiny_model import export_model
    from services.gpu_worker.models.training import train_phrase_adapter

    root = tmp_path_factory.mktemp("adapter")
    model_dir = root / "loraserve" / "kimi-k2-tiny"  # base_model_name_or_path must end in the model id
    export_model("loraserve/kimi-k2-tiny", model_dir)
    train_phrase_adapter(model_dir, PROMPT, PHRASE, root / "adapter")
    return root / "adapter"


@pytest.fixture(scope="session")
def keys(tmp_path_factory):
    path = tmp_path_factory.mktemp("identity") / "keys.json"
    store = FileIdentityStore(path, pepper=KEY_PEPPER)
    _, key_a = asyncio.run(store.create("org-a"))
    _, key_b = asyncio.run(store.create("org-b"))
    return path, {"org-a": key_a, "org-b": key_b}


@pytest.fixture(scope="session")
def topology(tmp_path_factory, rabbit_url, s3_server, keys):
    topo = start_topology(tmp_path_factory.mktemp("topology"), rabbit_url, s3_server, keys[0])
    yield topo
    topo.stop_all()
