"""Which files a LoRA holds on to, read from the registry's `lora.created` / `lora.deleted` events."""
from __future__ import annotations

from dataclasses import dataclass

from shared.contracts.messages import LoraCreated, LoraDeleted

FILE_ID_FIELDS = ("config_file_id", "weights_file_id")


@dataclass(frozen=True)
class Reference:
    """A LoRA's claim on its files. `released` is a tombstone: a late `lora.created` cannot revive it."""

    lora_id: str
    org_id: str
    file_ids: tuple[str, ...]
    released: bool


def reference_from(event: LoraCreated | LoraDeleted) -> Reference | None:
    """None when the event names no LoRA id (nothing to count)."""
    if event.adapter is not None:
        lora_id = event.adapter.lora_id
        file_ids = (event.adapter.config_file_id, event.adapter.weights_file_id)
    else:
        lora_id = str(event.lora.get("id") or "")
        file_ids = tuple(str(event.lora[f]) for f in FILE_ID_FIELDS if event.lora.get(f))
    if not lora_id:
        return None
    return Reference(lora_id=lora_id, org_id=event.org_id, file_ids=tuple(dict.fromkeys(file_ids)),
                     released=isinstance(event, LoraDeleted))
