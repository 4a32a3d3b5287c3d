"""Per-org quotas on what an org keeps on the platform: LoRAs, files, stored bytes, pending uploads,
validations in flight and webhook endpoints.

Defaults come from the settings (`LORASERVE_QUOTA_*`); an operator overrides them per org with
`loraserve admin orgs set-limits` or `PUT /internal/v1/orgs/{org}/limits`, stored with the identity store that
every HTTP service shares. Going over a quota is a 403 `quota_exceeded` (not a 429: waiting frees nothing, only
deleting something or a higher limit does), with `x-should-retry: false` so no SDK retries it.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

from shared.contracts.errors import ApiError

if TYPE_CHECKING:
    from shared.identity.store import IdentityStore
    from shared.settings import Settings

# quota name (the `param` of the error, the CLI flag, the JSON field) -> what a person calls it
QUOTA_LABELS = {
    "loras": "LoRAs",
    "files": "files",
    "stored_bytes": "stored bytes",
    "pending_uploads": "pending uploads",
    "validations_in_flight": "validations in flight",
    "webhook_endpoints": "webhook endpoints",
}
# rate and concurrency limits an operator may override per org the same way (429s, not quotas)
RATE_LABELS = {
    "requests_per_minute": "inference requests per window",
    "tokens_per_minute": "inference tokens per window",
    "management_requests_per_minute": "management API requests per window",
    "concurrent_streams": "concurrent streams",
    "concurrent_uploads": "concurrent uploads",
    "upload_bytes_in_flight": "upload bytes in flight",
    "inflight_jobs": "inference jobs queued or running per model",
}
LIMIT_LABELS = {**QUOTA_LABELS, **RATE_LABELS}
MAX_LIMIT = 2**62  # fits a MongoDB int64 with room for the sums compared with it


class OrgLimits(BaseModel):
    """One org's overrides; a field left out (null) follows the settings' default."""
    model_config = ConfigDict(extra="forbid")

    loras: int | None = Field(None, ge=0, le=MAX_LIMIT)
    files: int | None = Field(None, ge=0, le=MAX_LIMIT)
    stored_bytes: int | None = Field(None, ge=0, le=MAX_LIMIT)
    pending_uploads: int | None = Field(None, ge=0, le=MAX_LIMIT)
    validations_in_flight: int | None = Field(None, ge=0, le=MAX_LIMIT)
    webhook_endpoints: int | None = Field(None, ge=0, le=MAX_LIMIT)
    requests_per_minute: int | None = Field(None, ge=1, le=MAX_LIMIT)
    tokens_per_minute: int | None = Field(None, ge=1, le=MAX_LIMIT)
    management_requests_per_minute: int | None = Field(None, ge=1, le=MAX_LIMIT)
    concurrent_streams: int | None = Field(None, ge=1, le=MAX_LIMIT)
    concurrent_uploads: int | None = Field(None, ge=1, le=MAX_LIMIT)
    upload_bytes_in_flight: int | None = Field(None, ge=1, le=MAX_LIMIT)
    inflight_jobs: int | None = Field(None, ge=1, le=MAX_LIMIT)

    def overrides(self) -> dict[str, int]:
        return {name: value for name, value in self.model_dump().items() if value is not None}

    def merged(self, changes: OrgLimits) -> OrgLimits:
        return OrgLimits(**{**self.overrides(), **changes.overrides()})


class EffectiveLimits(BaseModel):
    loras: int
    files: int
    stored_bytes: int
    pending_uploads: int
    validations_in_flight: int
    webhook_endpoints: int
    # None: the setting is unset, no limit
    requests_per_minute: int | None
    tokens_per_minute: int | None
    management_requests_per_minute: int | None
    concurrent_streams: int | None
    concurrent_uploads: int | None
    upload_bytes_in_flight: int | None
    inflight_jobs: int | None


class OrgLimitsView(BaseModel):
    """What the admin API and `admin orgs show` answer: the overrides and the limits in force."""
    org_id: str
    overrides: OrgLimits
    effective: EffectiveLimits


def default_limits(settings: Settings) -> EffectiveLimits:
    return EffectiveLimits(loras=settings.quota_loras, files=settings.quota_files,
                           stored_bytes=settings.quota_stored_bytes, pending_uploads=settings.quota_pending_uploads,
                           validations_in_flight=settings.quota_validations_in_flight,
                           webhook_endpoints=settings.quota_webhook_endpoints,
                           requests_per_minute=settings.ratelimit_requests_per_minute,
                           tokens_per_minute=settings.ratelimit_tokens_per_minute,
                           management_requests_per_minute=settings.ratelimit_management_requests_per_minute,
                           concurrent_streams=settings.ratelimit_concurrent_streams,
                           concurrent_uploads=settings.ratelimit_concurrent_uploads,
                           upload_bytes_in_flight=settings.ratelimit_upload_bytes_in_flight,
                           inflight_jobs=settings.fair_org_inflight_jobs)


def effective_limits(settings: Settings, overrides: OrgLimits) -> EffectiveLimits:
    return default_limits(settings).model_copy(update=overrides.overrides())


class QuotaExceeded(ApiError):
    status = 403
    type = "quota_exceeded"

    def __init__(self, quota: str, used: int, limit: int, adding: int = 1, hint: str = ""):
        label = QUOTA_LABELS[quota]
        asked = f"; this request needs {adding} more" if adding != 1 else ""
        message = (f"Quota exceeded: {label}: {used} of {limit} used{asked}. "
                   f"{hint or 'Delete some or ask the operator for a higher limit.'}")
        super().__init__(message, param=quota, code="quota_exceeded", headers={"x-should-retry": "false"})
        self.quota, self.used, self.limit = quota, used, limit


def check(quota: str, used: int, limit: int, adding: int = 1, hint: str = "") -> None:
    """Raise QuotaExceeded when `adding` more would take `used` past `limit`."""
    if adding > 0 and used + adding > limit:
        raise QuotaExceeded(quota, used, limit, adding, hint)


class Quotas:
    """The limits in force for an org: its overrides from the identity store over the settings' defaults."""

    def __init__(self, settings: Settings, identity: IdentityStore):
        self.settings = settings
        self.identity = identity

    async def limits(self, org_id: str) -> EffectiveLimits:
        return effective_limits(self.settings, await self.identity.get_limits(org_id))

    async def view(self, org_id: str) -> OrgLimitsView:
        overrides = await self.identity.get_limits(org_id)
        return OrgLimitsView(org_id=org_id, overrides=overrides, effective=effective_limits(self.settings, overrides))
