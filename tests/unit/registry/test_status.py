"""A LoRA's status follows the latest validation record of each supported model."""
import pytest

from services.registry.domain.status import derive_status, is_later
from shared.contracts.loras import ValidationRecord

A, B = "model-a", "model-b"


def rec(model: str, status: str, n: int = 0) -> ValidationRecord:
    return ValidationRecord(id=f"val_{model}_{n}", model=model, status=status, response_id=f"resp_{n}", created_at=n)


@pytest.mark.parametrize("a, b, expected", [
    ("pending", "succeeded", "pending_validation"),
    ("running", "failed", "pending_validation"),
    ("succeeded", "failed", "ready"),
    ("unverified", "failed", "ready"),
    ("failed", "failed", "failed"),
    ("succeeded", "unverified", "ready"),
])
def test_status_from_the_two_models(a, b, expected):
    assert derive_status([A, B], [rec(A, a), rec(B, b)]) == expected


def test_only_the_latest_record_of_a_model_counts():
    records = [rec(A, "failed", 0), rec(A, "succeeded", 1)]
    assert derive_status([A], records) == "ready"
    assert derive_status([A], [rec(A, "succeeded", 0), rec(A, "pending", 1)]) == "pending_validation"


def test_a_model_no_longer_supported_does_not_count():
    assert derive_status([A], [rec(A, "succeeded"), rec(B, "pending")]) == "ready"


@pytest.mark.parametrize("new, current, later", [
    ("running", "pending", True), ("succeeded", "running", True), ("failed", "pending", True),
    ("running", "running", False), ("pending", "running", False), ("running", "succeeded", False),
    ("failed", "succeeded", False), ("unverified", "failed", False),
])
def test_state_order(new, current, later):
    assert is_later(new, current) is later
