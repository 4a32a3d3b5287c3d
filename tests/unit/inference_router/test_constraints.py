"""The seed's constraints on LoRA requests and OpenAI's metadata limits."""
from __future__ import annotations

import pytest

from services.inference_router.constraints import (
    check_lora_usable,
    routing_of,
    validate_metadata,
)
from services.inference_router.loras import LoraView, ValidationView
from shared.contracts.errors import BadRequest

TINY, BIG = "loraserve/kimi-k2-tiny", "moonshotai/Kimi-K2.6"


def view(status="succeeded", message=None, models=(TINY,)):
    return LoraView(id="id", org_id="org", name="funny", supported_models=models,
                    latest_validation={TINY: ValidationView(status, "load_failed", message)}, adapter=None,
                    version=1)


@pytest.mark.parametrize("status", ["pending", "running", "succeeded", "unverified"])
def test_usable_statuses(status):
    check_lora_usable(view(status), TINY, "priority")


def test_failed_validation_names_its_reason():
    with pytest.raises(BadRequest) as caught:
        check_lora_usable(view("failed", "rank 128 exceeds 64"), TINY, "flex")
    assert "rank 128 exceeds 64" in caught.value.message and caught.value.param == "metadata.lora"


def test_asap_and_wrong_model_are_reported_together():
    with pytest.raises(BadRequest) as caught:
        check_lora_usable(view(), BIG, "asap")
    assert "asap" in caught.value.message and "does not support model" in caught.value.message
    assert caught.value.param == "metadata.completion_window"


def test_default_windows():
    assert routing_of({}).window == "asap"
    assert routing_of({"lora": "funny"}).window == "priority"
    assert routing_of({"lora": "funny", "completion_window": "flex"}).window == "flex"


def test_unknown_window_and_empty_lora():
    with pytest.raises(BadRequest, match="not one of"):
        routing_of({"completion_window": "whenever"})
    with pytest.raises(BadRequest, match="empty"):
        routing_of({"lora": " "})


def test_metadata_limits_are_all_reported():
    metadata = {f"k{i}": "v" for i in range(16)}
    assert validate_metadata(metadata) == metadata
    bad = {**metadata, "x" * 65: "v" * 513, "n": 3}
    with pytest.raises(BadRequest) as caught:
        validate_metadata(bad)
    for needle in ("at most 16", "longer than 64", "longer than 512", "must be a string"):
        assert needle in caught.value.message
