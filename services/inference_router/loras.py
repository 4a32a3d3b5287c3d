"""The router's read model of every org's LoRAs: filled from the registry's listing, kept current by lora.* events.

Pure and in memory, so resolving `metadata.lora` costs no database round trip. Events may
arrive twice or out of order: a LoRA's `version` decides, and a deleted LoRA leaves a
tombstone so that an older event or a stale listing cannot bring it back.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from shared.contracts.messages import AdapterRef


@dataclass(frozen=True)
class ValidationView:
    status: str
    result_code: str | None = None
    result_message: str | None = None


@dataclass(frozen=True)
class LoraView:
    id: str
    org_id: str
    name: str
    supported_models: tuple[str, ...]
    latest_validation: dict[str, ValidationView]  # model -> its latest record
    adapter: AdapterRef | None
    version: int


def latest_validations(records: list[dict[str, Any]]) -> dict[str, ValidationView]:
    """The latest record per model; `validations[]` is oldest first, so the last one wins."""
    latest: dict[str, ValidationView] = {}
    for record in records:
        model = record.get("model")
        if isinstance(model, str):
            latest[model] = ValidationView(record.get("status", "pending"), record.get("result_code"),
                                           record.get("result_message"))
    return latest


def view_from(org_id: str, lora: dict[str, Any], adapter: AdapterRef | dict | None, version: int) -> LoraView:
    if isinstance(adapter, dict):
        adapter = AdapterRef.model_validate(adapter)
    return LoraView(
        id=str(lora["id"]),
        org_id=org_id,
        name=str(lora.get("name", "")),
        supported_models=tuple(lora.get("supported_models") or ()),
        latest_validation=latest_validations(lora.get("validations") or []),
        adapter=adapter,
        version=version,
    )


def as_uuid(ref: str) -> str | None:
    """The canonical form of a UUID reference, or None for a name."""
    try:
        return str(uuid.UUID(ref))
    except ValueError:
        return None


@dataclass
class LoraReadModel:
    by_id: dict[str, LoraView] = field(default_factory=dict)
    id_by_name: dict[tuple[str, str], str] = field(default_factory=dict)
    deleted_at_version: dict[str, int] = field(default_factory=dict)
    loaded: bool = False  # the registry's full listing has been applied once

    def upsert(self, view: LoraView) -> bool:
        """Apply a LoRA's state unless a newer one (or its deletion) is already known."""
        current = self.by_id.get(view.id)
        if current is not None and view.version < current.version:
            return False
        if view.id in self.deleted_at_version and view.version <= self.deleted_at_version[view.id]:
            return False
        if current is not None:
            self.id_by_name.pop((current.org_id, current.name), None)
        self.by_id[view.id] = view
        self.id_by_name[(view.org_id, view.name)] = view.id
        return True

    def delete(self, lora_id: str, version: int) -> bool:
        current = self.by_id.get(lora_id)
        if current is not None and version < current.version:
            return False
        self.deleted_at_version[lora_id] = max(version, self.deleted_at_version.get(lora_id, version))
        if current is None:
            return False
        del self.by_id[lora_id]
        self.id_by_name.pop((current.org_id, current.name), None)
        return True

    def find(self, org_id: str, ref: str) -> LoraView | None:
        """A name or UUID in the caller's org; another org's LoRA is simply not there."""
        lora_id = as_uuid(ref) or self.id_by_name.get((org_id, ref))
        view = self.by_id.get(lora_id) if lora_id else None
        return view if view is not None and view.org_id == org_id else None
