"""What the embedded platform re-issues at start-up from its documents, after the in-memory bus lost it:
validation jobs of records still in progress, and background responses that can no longer run."""
from __future__ import annotations

import asyncio

from services.inference_router.response_docs import new_document
from services.inference_router.response_repo import ResponseRepository
from services.registry.app import registry_from
from services.registry.domain.lora import NewLora, create_document
from shared.bus.base import Delivery
from shared.composition import build_platform, recover_embedded
from shared.contracts import topology
from shared.contracts.messages import AdapterRef, ChatMessage, ValidateAdapter
from shared.settings import Settings

MODEL = "loraserve/kimi-k2-tiny"


def _platform(data_dir):
    return build_platform(Settings(data_dir=data_dir), source="loraserve/recovery-test")


async def _store_before_the_crash(data_dir) -> tuple[str, str]:
    """A LoRA whose validation job and a background response whose job were in memory when it died."""
    platform = _platform(data_dir)
    adapter = AdapterRef(lora_id="5a0c58f8-6b1c-4a8a-9f0e-2d5f8f1b7d11", name="pirate", config_file_id="file-c",
                         weights_file_id="file-w", config_object_key="k/c", weights_object_key="k/w")
    document = create_document(NewLora(org_id="org-a", name="pirate", display_name=None, description=None,
                                       supported_models=[MODEL], adapter=adapter), 1_700_000_000_000_000_000)
    await registry_from(platform).repository.insert(document)
    responses = ResponseRepository(platform.documents.database("inference_router"))
    await responses.insert(new_document(response_id="resp_lost", org_id="org-a", model=MODEL, background=True,
                                        messages=[ChatMessage(role="user", content="hi")], status="queued"))
    return document.validations[0].id, "resp_lost"  # no close(): the process was killed


async def test_a_restart_reissues_validation_jobs_and_fails_lost_background_responses(tmp_path):
    validation_id, response_id = await _store_before_the_crash(tmp_path)

    platform = _platform(tmp_path)
    await platform.bus.start()
    jobs: asyncio.Queue[Delivery] = asyncio.Queue()

    async def collect(delivery: Delivery) -> None:
        await jobs.put(delivery)

    subscription = await platform.bus.consume(topology.VALIDATION_QUEUE, collect)
    await recover_embedded(platform, ["registry", "inference-router"])

    job = ValidateAdapter.from_event((await asyncio.wait_for(jobs.get(), 10)).event)
    assert (job.validation_id, job.org_id, job.model) == (validation_id, "org-a", MODEL)
    stored = await ResponseRepository(platform.documents.database("inference_router")).get("org-a", response_id)
    assert stored["status"] == "failed" and stored["error"]["code"] == "server_restarted"
    await subscription.close()
    await platform.bus.close()
    await platform.documents.close()
