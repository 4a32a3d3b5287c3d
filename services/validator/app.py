"""The validator's part of an app: one bus consumer on the validation queue (no routes of its own)."""
from __future__ import annotations

from services.validator.handler import Validator, dispatcher
from shared.contracts import topology as t
from shared.platform import Platform, ServicePart


def validator_from(platform: Platform) -> Validator:
    return Validator(bus=platform.bus, blobs=platform.blobs, catalogue=platform.catalogue, source=platform.source,
                     deployed_models=platform.settings.deployed_models)


def consumer_ctx(validator: Validator):
    async def ctx(app):
        subscription = await validator.bus.consume(t.VALIDATION_QUEUE, dispatcher(validator))
        yield
        await subscription.close()
    return ctx


def build(platform: Platform) -> ServicePart:
    return ServicePart(name="validator", cleanup_ctx=[consumer_ctx(validator_from(platform))])
