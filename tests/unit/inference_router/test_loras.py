"""The LoRA read model: versions decide, deletions stick, orgs never see each other's LoRAs."""
from __future__ import annotations

import uuid

from services.inference_router.loras import LoraReadModel, view_from

TINY = "loraserve/kimi-k2-tiny"


def lora(name="funny", lora_id=None, validations=()):
    return {"id": lora_id or str(uuid.uuid4()), "name": name, "supported_models": [TINY],
            "validations": list(validations)}


def test_find_by_name_and_by_any_uuid_spelling():
    model = LoraReadModel()
    view = view_from("org-a", lora(), None, 1)
    model.upsert(view)
    assert model.find("org-a", "funny") == view
    assert model.find("org-a", view.id.upper()) == view
    assert model.find("org-a", view.id.replace("-", "")) == view


def test_another_orgs_lora_is_invisible_by_name_and_id():
    model = LoraReadModel()
    view = view_from("org-a", lora(), None, 1)
    model.upsert(view)
    assert model.find("org-b", "funny") is None
    assert model.find("org-b", view.id) is None


def test_two_orgs_may_own_the_same_name():
    model = LoraReadModel()
    mine, theirs = view_from("org-a", lora(), None, 1), view_from("org-b", lora(), None, 1)
    model.upsert(mine), model.upsert(theirs)
    assert model.find("org-a", "funny") == mine and model.find("org-b", "funny") == theirs


def test_an_older_version_does_not_replace_a_newer_one():
    model = LoraReadModel()
    payload = lora()
    newer = view_from("org-a", {**payload, "supported_models": [TINY, "other"]}, None, 5)
    assert model.upsert(newer)
    assert not model.upsert(view_from("org-a", payload, None, 4))
    assert model.find("org-a", "funny").supported_models == (TINY, "other")


def test_a_deleted_lora_stays_deleted_against_stale_state():
    model = LoraReadModel()
    payload = lora()
    model.upsert(view_from("org-a", payload, None, 2))
    assert model.delete(payload["id"], 3)
    assert not model.upsert(view_from("org-a", payload, None, 2))  # e.g. a listing read before the delete
    assert model.find("org-a", "funny") is None


def test_a_deletion_seen_before_its_creation_wins():
    model = LoraReadModel()
    payload = lora()
    model.delete(payload["id"], 2)
    assert not model.upsert(view_from("org-a", payload, None, 1))


def test_the_latest_validation_per_model_decides():
    records = [{"model": TINY, "status": "failed", "result_message": "old"},
               {"model": TINY, "status": "pending"}]
    view = view_from("org-a", lora(validations=records), None, 1)
    assert view.latest_validation[TINY].status == "pending"
