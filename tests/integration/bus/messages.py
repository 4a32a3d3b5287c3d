"""Small valid bus messages for the bus suite."""

from __future__ import annotations

from shared.contracts import messages as m

SOURCE = "tests/bus"


def validation_job(validation_id: str = "val-1", slug: str = "tiny") -> m.ValidateAdapter:
    adapter = m.AdapterRef(
        lora_id="lora-1",
        name="adapter",
        config_file_id="file-c",
        weights_file_id="file-w",
        config_object_key="c",
        weights_object_key="w",
    )
    return m.ValidateAdapter(
        validation_id=validation_id,
        org_id="org-a",
        model="loraserve/kimi-k2-tiny",
        model_slug=slug,
        response_id=f"resp_{validation_id}",
        adapter=adapter,
    )


def inference_job(response_id: str = "resp_1", slug: str = "tiny") -> m.GenerateResponse:
    return m.GenerateResponse(
        response_id=response_id,
        org_id="org-a",
        model="loraserve/kimi-k2-tiny",
        model_slug=slug,
        messages=[m.ChatMessage(role="user", content="hi")],
    )


def file_created(org_id: str, file_id: str) -> m.FileCreated:
    return m.FileCreated(org_id=org_id, file={"id": file_id, "object": "file"})


JOBS = {"quorum": validation_job, "classic": inference_job}
