"""`loraserve worker --model ID`'s app: ready once the model is loaded, its metrics on /metrics."""
from aiohttp.test_utils import TestClient, TestServer

from services.gpu_worker.app import build
from shared.composition import build_platform
from shared.contracts.messages import ChatMessage, GenerateResponse, ResponseFinished, SamplingParams
from shared.http.app import create_app
from shared.settings import Settings
from tests.integration.gpu_worker.conftest import ENTRY


async def test_the_worker_app_is_ready_with_its_model_and_reports_its_metrics(tmp_path):
    settings = Settings(data_dir=tmp_path, worker_model=ENTRY.id, worker_slots=2, worker_max_batch=2)
    platform = build_platform(settings, source="test/gpu-worker")
    async with TestClient(TestServer(create_app(platform, [build(platform)]))) as client:
        ready = await client.get("/readyz")
        assert ready.status == 200, await ready.text()
        job = GenerateResponse(response_id="resp_app", org_id="org-a", model=ENTRY.id, model_slug=ENTRY.slug,
                               messages=[ChatMessage(role="user", content="hi")],
                               sampling=SamplingParams(max_tokens=5, temperature=0.0))
        stream = await platform.bus.request(job, source="test/router")
        final = ResponseFinished.from_event(await stream.next(timeout=20))
        await stream.close()
        assert final.completion_tokens >= 1
        metrics = await (await client.get("/metrics")).text()
        for name in ("loraserve_worker_batch_size", "loraserve_worker_generated_tokens_total",
                     "loraserve_worker_queue_wait_seconds", "loraserve_worker_tokens_per_second"):
            assert name in metrics
