"""Usage reports at OpenAI's path and shape: GET /v1/organization/usage/completions.

A page of time buckets; each bucket's results are the org's finished requests summed per
combination of the `group_by` fields (fields not grouped by are null). `lora_id` is ours:
OpenAI has no adapters. What OpenAI reports that we have no notion of (projects, users,
batch, cached input) is always null or 0, so the SDK's models parse our answer.
"""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

BucketWidth = Literal["1m", "1h", "1d"]
GroupField = Literal["model", "api_key_id", "lora_id"]
BUCKET_SECONDS: dict[str, int] = {"1m": 60, "1h": 3600, "1d": 86400}
# OpenAI's limits on the number of buckets per page, by width: (default, max)
BUCKET_LIMITS: dict[str, tuple[int, int]] = {"1m": (60, 1440), "1h": (24, 168), "1d": (7, 31)}
# unix seconds past year 5000 are a mistake, not a query
MAX_UNIX_SECONDS = 95_617_584_000
MAX_FILTER_VALUES = 64


class UsageQuery(BaseModel):
    """The query string; arrays are sent repeated (`group_by=model&group_by=lora_id`), with brackets as the
    OpenAI SDKs send them (`group_by[]=model`), or comma-separated (`group_by=model,lora_id`)."""

    model_config = ConfigDict(extra="forbid")

    start_time: int = Field(ge=0, le=MAX_UNIX_SECONDS, description="Start (unix seconds) of the range, inclusive.")
    end_time: int | None = Field(None, ge=0, le=MAX_UNIX_SECONDS,
                                 description="End (unix seconds) of the range, exclusive; now when absent.")
    bucket_width: BucketWidth = Field("1d", description="Width of each time bucket.")
    group_by: list[GroupField] | None = Field(None, max_length=3,
                                              description="Sum per these fields; those not grouped by are null.")
    models: list[str] | None = Field(None, max_length=MAX_FILTER_VALUES, description="Only these models.")
    api_key_ids: list[str] | None = Field(None, max_length=MAX_FILTER_VALUES, description="Only these API keys.")
    lora_ids: list[str] | None = Field(None, max_length=MAX_FILTER_VALUES, description="Only these LoRAs.")
    limit: int | None = Field(None, ge=1, le=BUCKET_LIMITS["1m"][1],
                              description="Buckets per page: 1d default 7 (max 31), 1h 24 (max 168), "
                                          "1m 60 (max 1440).")
    page: str | None = Field(None, max_length=64, description="The `next_page` cursor of the previous page.")

    @model_validator(mode="after")
    def _consistent(self) -> UsageQuery:
        if self.end_time is not None and self.end_time <= self.start_time:
            raise ValueError("end_time must be after start_time")
        if self.limit is not None and self.limit > BUCKET_LIMITS[self.bucket_width][1]:
            raise ValueError(f"limit is at most {BUCKET_LIMITS[self.bucket_width][1]} "
                             f"for bucket_width {self.bucket_width}")
        return self

    @property
    def bucket_seconds(self) -> int:
        return BUCKET_SECONDS[self.bucket_width]

    @property
    def page_size(self) -> int:
        return self.limit or BUCKET_LIMITS[self.bucket_width][0]


class UsageCompletionsResult(BaseModel):
    object: Literal["organization.usage.completions.result"] = "organization.usage.completions.result"
    input_tokens: int
    output_tokens: int
    num_model_requests: int
    input_cached_tokens: int = 0
    input_audio_tokens: int = 0
    output_audio_tokens: int = 0
    project_id: str | None = None
    user_id: str | None = None
    api_key_id: str | None = None
    model: str | None = None
    batch: bool | None = None
    lora_id: str | None = Field(None, description="The LoRA that served the requests (null: the base model, "
                                                  "or not grouped by lora_id).")


class UsageBucket(BaseModel):
    object: Literal["bucket"] = "bucket"
    start_time: int
    end_time: int
    results: list[UsageCompletionsResult]


class UsagePage(BaseModel):
    object: Literal["page"] = "page"
    data: list[UsageBucket]
    has_more: bool
    next_page: str | None = None
