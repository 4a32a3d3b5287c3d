"""Building LoRA documents and status events for the registry's unit tests."""
from datetime import UTC, datetime

from services.registry.domain.lora import LoraDocument, NewLora, create_document
from shared.contracts.messages import AdapterRef, ValidationStatusChanged

TINY = "loraserve/kimi-k2-tiny"
KIMI = "moonshotai/Kimi-K2.6"
CREATED_NS = 1_800_000_000 * 1_000_000_000


def adapter(lora_id: str = "3fa85f64-5717-4562-b3fc-2c963f66afa6") -> AdapterRef:
    return AdapterRef(lora_id=lora_id, name="funnier-v1", config_file_id="file-cfg", weights_file_id="file-wts",
                      config_object_key="orgs/acme/files/file-cfg", weights_object_key="orgs/acme/files/file-wts")


def document(models=(TINY,), org_id: str = "acme") -> LoraDocument:
    spec = NewLora(org_id=org_id, name="funnier-v1", display_name=None, description=None,
                   supported_models=list(models), adapter=adapter())
    return create_document(spec, CREATED_NS)


def status_event(doc: LoraDocument, model: str, status: str, at: int, seq: int, code: str | None = None,
                 validation_id: str | None = None) -> ValidationStatusChanged:
    record = next(r for r in reversed(doc.validations) if r.model == model)
    return ValidationStatusChanged(
        lora_id=doc.id, org_id=doc.org_id, model=model, validation_id=validation_id or record.id, status=status,
        seq=seq, result_code=code, result_message=f"{code} happened" if code else None,
        occurred_at=datetime.fromtimestamp(at, UTC))
