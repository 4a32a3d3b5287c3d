"""What the router's handlers share: the platform, the LoRA directory, the Response repository."""
from __future__ import annotations

import secrets
from dataclasses import dataclass

from aiohttp import web

from services.inference_router.admission import Admitted, deadline_after
from services.inference_router.constraints import estimated_prompt_tokens
from services.inference_router.dispatch import WorkerCall, publish_cancel
from services.inference_router.fairness.background import BackgroundDispatch
from services.inference_router.fairness.scheduler import FairScheduler, job_cost
from services.inference_router.lora_sync import LoraDirectory
from services.inference_router.rate_limits import RATE_GRANT, RateLimits, SettlingMeter
from services.inference_router.response_repo import ResponseRepository
from services.inference_router.usage_meter import UsageMeter, kind_of
from services.inference_router.usage_repo import UsageRepository
from shared.contracts.messages import GenerateResponse
from shared.http.requests import api_key_id, org_id, request_id
from shared.platform import Platform


@dataclass
class RouterContext:
    platform: Platform
    loras: LoraDirectory
    responses: ResponseRepository
    usage: UsageRepository
    limits: RateLimits
    fair: FairScheduler
    background: BackgroundDispatch

    @property
    def sync_timeout(self) -> float:
        return self.platform.settings.sync_request_timeout_seconds

    def window_seconds(self, window: str) -> float:
        return self.platform.settings.completion_window_deadline_seconds.get(window, self.sync_timeout)

    def sync_deadline(self, admitted: Admitted) -> float:
        """Nobody waits for a sync job past the sync timeout, so the worker may drop it then."""
        return deadline_after(min(self.window_seconds(admitted.window), self.sync_timeout))

    def background_deadline(self, admitted: Admitted) -> float:
        return deadline_after(self.window_seconds(admitted.window))

    async def cancel_stored(self, doc: dict, correlation_id: str | None = None) -> None:
        """Cancel the job of a stored Response (its model may have left the catalogue since)."""
        if doc["model"] in self.platform.catalogue.ids():
            await publish_cancel(self.platform.bus, self.platform.source, response_id=doc["id"],
                                 org_id=doc["org_id"], model_slug=self.platform.catalogue.get(doc["model"]).slug,
                                 correlation_id=correlation_id)

    def call(self, request: web.Request, job: GenerateResponse, admitted: Admitted) -> WorkerCall:
        meter = UsageMeter(self.usage, org_id=org_id(request), api_key_id=api_key_id(request), model=job.model,
                           lora_id=admitted.lora.id if admitted.lora else None, completion_window=admitted.window,
                           kind=kind_of(request.path))
        grant = request.get(RATE_GRANT)
        if grant is not None:
            meter = SettlingMeter(meter, self.limits, grant)
        self.fair.check_room(admitted.model, job.org_id)
        turn = self.fair.turn(admitted.model, job, self.cost_of(admitted, job), wait=self.sync_timeout)
        return WorkerCall(self.platform.bus, job, source=self.platform.source,
                          correlation_id=request_id(request), priority=admitted.priority,
                          first_timeout=self.sync_timeout, idle_timeout=self.idle_timeout(job), meter=meter,
                          admission=turn)

    @staticmethod
    def cost_of(admitted: Admitted, job: GenerateResponse) -> int:
        """What fair scheduling charges a job: its prompt's estimated tokens plus the most it may write."""
        return job_cost(job, estimated_prompt_tokens(admitted.model, [m.content for m in job.messages]))

    def idle_timeout(self, job: GenerateResponse) -> float:
        """A stream hears from its worker every token; a non-streamed job only once, at the end."""
        if job.stream:
            return min(self.platform.settings.stream_idle_timeout_seconds, self.sync_timeout)
        return self.sync_timeout


def new_id(prefix: str) -> str:
    return prefix + secrets.token_hex(16)
