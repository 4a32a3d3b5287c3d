"""Reading a job off the model's queue: a job that can never run here is dead-lettered, not retried."""
from __future__ import annotations

from typing import TypeVar

from pydantic import ValidationError

from services.gpu_worker.worker import Worker
from shared.bus.base import DeadLetter, Delivery
from shared.contracts.messages import GenerateResponse, RunGpuValidation

Job = TypeVar("Job", GenerateResponse, RunGpuValidation)


def parse_pool_job(worker: Worker, delivery: Delivery, kind: type[Job], what: str) -> Job:
    try:
        job = kind.from_event(delivery.event)
    except (ValidationError, ValueError) as exc:
        raise DeadLetter(f"malformed {what}: {exc}") from None
    if job.model_slug != worker.slug:
        raise DeadLetter(f"{what} for model {job.model_slug} reached the {worker.slug} pool")
    return job
