"""file.created / file.deleted on the bus."""
from __future__ import annotations

from shared.bus.base import BusError
from shared.contracts.files import FileObject
from shared.contracts.messages import FileCreated, FileDeleted
from shared.logging import correlation_id, get_logger

log = get_logger("file_ingest.events")


async def publish_file_event(bus, source: str, kind: type[FileCreated | FileDeleted], org_id: str,
                             file: FileObject) -> None:
    """Publish after the change is durable; an event nobody is bound to is not the caller's failure."""
    message = kind(org_id=org_id, file=file.model_dump(mode="json"))
    try:
        await bus.publish(message, source=source, correlation_id=correlation_id.get())
    except BusError as exc:
        # publishes are mandatory: with no subscriber bound to file events the broker returns them
        log.info("file_event_not_delivered", type=kind.TYPE, file_id=file.id, reason=str(exc))
