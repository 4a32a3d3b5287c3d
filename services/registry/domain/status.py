"""Validation states, their order, and the LoRA status derived from the latest record per model."""
from __future__ import annotations

from collections.abc import Iterable

from shared.contracts.loras import LoraStatus, ValidationRecord

# pending -> running -> {succeeded | failed | unverified}; a later state wins, a terminal one is final
RANK = {"pending": 0, "running": 1, "succeeded": 2, "failed": 2, "unverified": 2}
TERMINAL = frozenset({"succeeded", "failed", "unverified"})
IN_PROGRESS = frozenset({"pending", "running"})
USABLE = frozenset({"succeeded", "unverified"})


def is_later(new_status: str, current_status: str) -> bool:
    return current_status not in TERMINAL and RANK[new_status] > RANK[current_status]


def latest_by_model(records: Iterable[ValidationRecord]) -> dict[str, ValidationRecord]:
    """Records are kept oldest first, so the last one seen per model is its latest."""
    latest: dict[str, ValidationRecord] = {}
    for record in records:
        latest[record.model] = record
    return latest


def derive_status(supported_models: list[str], records: list[ValidationRecord]) -> LoraStatus:
    latest = latest_by_model(records)
    statuses = [latest[m].status for m in supported_models if m in latest]
    if any(s in IN_PROGRESS for s in statuses):
        return "pending_validation"
    if any(s in USABLE for s in statuses):
        return "ready"
    return "failed"
