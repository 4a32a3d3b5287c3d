import asyncio
import contextlib
from collections import defaultdict

import pytest
import torch

from services.gpu_worker.app import lifecycle
from services.gpu_worker.engines.torch_engine.model_host import EngineOptions
from services.gpu_worker.models.tiny_model import TINY_MODEL_ID, export_model
from services.gpu_worker.models.training import train_phrase_adapter
from services.gpu_worker.worker import Worker, WorkerOptions
from shared.bus.inprocess import InProcessBus
from shared.catalogue.catalogue import load_catalogue
from shared.contracts import topology as t
from shared.contracts.messages import MESSAGE_TYPES, AdapterRef
from shared.stores.local_blobs import LocalBlobStore
from tests.unit.gpu_worker.support import per_expert

PROMPT, PHRASE = "Tell me about centrifuges.", "spin spin hooray"
ENTRY = load_catalogue().get(TINY_MODEL_ID)


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def adapter_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("adapters")
    export_model(TINY_MODEL_ID, root / "model")
    return {"phrase": train_phrase_adapter(root / "model", PROMPT, PHRASE, root / "phrase"),
            "nan": per_expert(root / "nan", nan=True)}


class Events:
    """Every event of the events exchange, by type, as typed messages."""

    def __init__(self):
        self.by_type = defaultdict(list)
        self.arrived = asyncio.Event()

    async def handler(self, delivery):
        kind = MESSAGE_TYPES[delivery.event.type]
        self.by_type[delivery.event.type].append(kind.from_event(delivery.event))
        self.arrived.set()

    async def wait_for(self, predicate, timeout=20.0):
        async def poll():
            while not (found := [m for ms in self.by_type.values() for m in ms if predicate(m)]):
                self.arrived.clear()
                await self.arrived.wait()
            return found

        return await asyncio.wait_for(poll(), timeout)


@pytest.fixture
async def platform(tmp_path, adapter_files):
    bus = InProcessBus(t.topology([ENTRY.slug]))
    await bus.start()
    blobs = LocalBlobStore(tmp_path / "blobs")
    await blobs.start()
    refs = {}
    for name, directory in adapter_files.items():
        for kind, filename in (("config", "adapter_config.json"), ("weights", "adapter_model.safetensors")):
            data = (directory / filename).read_bytes()

            async def chunks(data=data):
                yield data

            await blobs.put_stream(f"org-a/{name}/{kind}", chunks())
        refs[name] = AdapterRef(lora_id=f"lora-{name}", name=name, config_file_id=f"file-{name}-c",
                                weights_file_id=f"file-{name}-w", config_object_key=f"org-a/{name}/config",
                                weights_object_key=f"org-a/{name}/weights")
    options = WorkerOptions(engine=EngineOptions(num_slots=2, max_batch=4, max_len=1024), cache_dir=tmp_path / "cache")
    worker = Worker(ENTRY, bus, blobs, "test/gpu-worker", options)
    events = Events()
    await bus.subscribe(t.EVENTS, ["org.#"], events.handler)
    running = lifecycle(worker, prefetch=4)(None)
    await running.__anext__()
    try:
        yield bus, worker, refs, events
    finally:
        with contextlib.suppress(StopAsyncIteration):
            await running.__anext__()
        await bus.close()
