"""Platform settings from the environment (prefix LORASERVE_); one object for every service."""
from __future__ import annotations

import base64
import binascii
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

GiB = 1024**3
# what a process runs with when nothing is set: fine on a laptop, refused in production
DEV_SERVICE_TOKEN = "dev-service-token"
DEV_KEY_PEPPER = "dev-key-pepper"
# AES-256-GCM key of the stored webhook signing secrets (base64 of 32 bytes); a fixed one for development only
DEV_WEBHOOK_SECRETS_KEY = "bG9yYXNlcnZlIGRldiB3ZWJob29rIHNlY3JldHMhISE="
MIN_SECRET_CHARS = 32


class UnsafeSettings(SystemExit):
    """A production process refuses to start with a guessable secret (the message says how to set it)."""


def secret_problem(variable: str, value: str, dev_default: str) -> str | None:
    """Why `value` is no secret for production, or None."""
    how = f"set it to a random value, e.g. {variable}=\"$(openssl rand -hex 32)\""
    if not value:
        return f"{variable} is not set: {how}"
    if value == dev_default:
        return f"{variable} is the development default {dev_default!r}: {how}"
    if len(value) < MIN_SECRET_CHARS:
        return f"{variable} has {len(value)} characters, fewer than {MIN_SECRET_CHARS}: {how}"
    return None


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LORASERVE_", extra="ignore")

    env: str = Field("dev", description="dev (console logs) or production (JSON logs)")
    host: str = "127.0.0.1"
    port: int = 8000
    data_dir: Path = Path(".loraserve")
    public_base_url: str | None = None

    # dependencies; unset means the embedded implementation
    amqp_url: str | None = None
    mongo_url: str | None = None
    s3_endpoint: str | None = None  # host:port
    s3_access_key: str = ""
    s3_secret_key: str = ""
    s3_bucket: str = "loraserve"
    s3_secure: bool = False
    s3_region: str = "us-east-1"

    # identity: a file of key hashes (default <data_dir>/keys.json) or Mongo's `identity` db
    keys_file: Path | None = None
    identity_backend: str = "file"  # file | mongo
    # guards /internal/*; an empty token opens nothing (every internal route answers 404)
    service_token: str = DEV_SERVICE_TOKEN
    # HMAC key of the stored API key hashes; kept apart from them (another Secret) so leaked hashes stay unguessable
    key_pepper: str = DEV_KEY_PEPPER

    # internal service URLs (production: Kubernetes Service names)
    file_ingest_url: str | None = None
    registry_url: str | None = None

    # limits
    max_file_bytes: int = 100 * GiB
    max_upload_part_bytes: int = 64 * 1024**2
    max_json_body_bytes: int = 4 * 1024**2
    # a client that sends part of a body and then nothing for this long is cut off with a 408
    body_idle_timeout_seconds: float = 30.0
    upload_ttl_seconds: int = 3600
    validation_deadline_seconds: int = 1800
    # the registry's per-org event log (GET /v1/events resumes from it) keeps events this long (default 7 days)
    event_retention_seconds: int = Field(604800, ge=60)
    sync_request_timeout_seconds: float = 120.0
    # a started stream whose worker sends nothing for this long ends with the API's error event
    stream_idle_timeout_seconds: float = 30.0
    # inference-router: completion_window -> seconds until a job's deadline (a job not started by then is
    # dropped; a background Response still queued then ends failed with code deadline_exceeded)
    completion_window_deadline_seconds: dict[str, float] = Field(
        default_factory=lambda: {"asap": 300.0, "priority": 3600.0, "standard": 6 * 3600.0, "flex": 24 * 3600.0})

    # the worker
    worker_model: str = "loraserve/kimi-k2-tiny"
    worker_slots: int = 8
    worker_max_batch: int = 16
    # torch | vllm; unset: the engine the catalogue entry names
    worker_engine: str | None = None
    # merged over the catalogue entry's engine arguments for this worker (e.g. {"pipeline_parallel_size": 2,
    # "extra_args": {"distributed_executor_backend": "ray"}}); extra_args are merged key by key
    worker_engine_args: dict[str, Any] = Field(default_factory=dict)
    # adapter-affinity routing: a job for an adapter goes to the worker its LoRA id hashes to (which likely holds
    # it hot) and waits there up to affinity_wait_seconds before any worker may take it; routers and workers
    adapter_affinity: bool = True
    affinity_wait_seconds: float = Field(1.0, gt=0, le=60)
    # adapters held in CPU memory per worker (vLLM's max_cpu_loras)
    worker_cpu_adapters: int = 32
    # where the served model's weights are mounted; unset: the catalogue's engine.model_path (or built from its seed)
    worker_model_path: Path | None = None
    # the vLLM environment's interpreter `worker --engine vllm` re-executes in (deploy/ensure-vllm.sh builds it);
    # unset: $XDG_CACHE_HOME/loraserve/vllm-current/bin/python, or this interpreter when it imports vllm
    vllm_python: Path | None = None
    # vLLM on a CPU host: bytes of KV cache (sized for a 24 GiB machine)
    vllm_cpu_kv_cache_bytes: int = 2 * GiB

    # the model catalogue file; unset: the packaged shared/catalogue/models.json
    catalogue_file: Path | None = None
    # model id -> whether this environment runs a worker pool for it, over the catalogue's `deployed` flag;
    # a model without one ends its validations `unverified` (engine_not_deployed) after the static checks
    deployed_models: dict[str, bool] = Field(default_factory=dict)

    # webhooks: signing secrets are sealed under this key (base64 of 32 random bytes; required in production)
    webhook_secrets_key: str = DEV_WEBHOOK_SECRETS_KEY
    # receivers on loopback/private/CGNAT addresses (and plain http) allowed; unset: yes outside production
    webhook_allow_private: bool | None = None
    # operator allow-list: comma-separated CIDRs a receiver may resolve to although otherwise refused
    webhook_allowed_cidrs: str = ""
    webhook_connect_timeout_seconds: float = Field(5.0, gt=0)
    webhook_timeout_seconds: float = Field(15.0, gt=0)  # a whole delivery attempt, response included
    webhook_max_response_bytes: int = Field(64 * 1024, ge=0)  # read of a receiver's answer, the rest dropped

    @property
    def keys_path(self) -> Path:
        return self.keys_file or self.data_dir / "keys.json"

    @property
    def production(self) -> bool:
        return self.env == "production"

    def secret_problems(self, service_token: bool = True, key_pepper: bool = True,
                        webhook_secrets_key: bool = False) -> list[str]:
        """In production: what keeps this process from starting safely (none in dev). A process that checks no
        API keys (the worker, the validator) needs no pepper; `admin keys` needs no token; only the webhooks
        service seals signing secrets."""
        if not self.production:
            return []
        problems = [service_token and secret_problem("LORASERVE_SERVICE_TOKEN", self.service_token, DEV_SERVICE_TOKEN),
                    key_pepper and secret_problem("LORASERVE_KEY_PEPPER", self.key_pepper, DEV_KEY_PEPPER),
                    webhook_secrets_key and self.webhook_secrets_key_problem(),
                    self.redis_password_problem()]
        return [p for p in problems if p]

    def webhook_secrets_key_problem(self) -> str | None:
        how = 'set it to 32 random bytes in base64, e.g. LORASERVE_WEBHOOK_SECRETS_KEY="$(openssl rand -base64 32)"'
        if self.webhook_secrets_key == DEV_WEBHOOK_SECRETS_KEY:
            return f"LORASERVE_WEBHOOK_SECRETS_KEY is the development default: {how}"
        try:
            key = base64.b64decode(self.webhook_secrets_key, validate=True)
        except (binascii.Error, ValueError):
            key = b""
        if len(key) != 32:
            return f"LORASERVE_WEBHOOK_SECRETS_KEY is not base64 of 32 bytes: {how}"
        return None

    def redis_password_problem(self) -> str | None:
        """A process given a Redis URL needs its password: an open Redis lets anything that reaches it reset
        every org's rate limits. Redis checks passwords fast, so the same length rule as the other secrets."""
        if not self.redis_url:
            return None
        password = self.redis_password or urlsplit(self.redis_url).password or ""
        if not password:
            return ("LORASERVE_REDIS_URL is set but Redis has no password: set LORASERVE_REDIS_PASSWORD to the "
                    "password redis-server requires (--requirepass), e.g. \"$(openssl rand -hex 32)\"")
        return secret_problem("LORASERVE_REDIS_PASSWORD", password, dev_default="")

    def require_safe(self, service_token: bool = True, key_pepper: bool = True,
                     webhook_secrets_key: bool = False) -> None:
        """Raise UnsafeSettings (exit status 1 with the reasons) when production secrets are missing or weak."""
        problems = self.secret_problems(service_token, key_pepper, webhook_secrets_key)
        if problems:
            raise UnsafeSettings("refusing to start in production (LORASERVE_ENV=production):\n  "
                                 + "\n  ".join(problems))

    # per-org quotas (defaults; `loraserve admin orgs set-limits` overrides them per org); over one -> 403
    # quota_exceeded. An upload reserves its declared bytes (and a file) from creation until it ends
    quota_loras: int = Field(1000, ge=0)
    quota_files: int = Field(10_000, ge=0)
    quota_stored_bytes: int = Field(1024**4, ge=0)  # 1 TiB: files plus pending uploads' declared bytes
    quota_pending_uploads: int = Field(100, ge=0)
    quota_validations_in_flight: int = Field(100, ge=0)  # validation records pending or running
    quota_webhook_endpoints: int = Field(20, ge=0)

    # rate limits on the inference APIs per org and per API key: fixed windows of ratelimit_window_seconds
    # (the "per minute" limits count per window); over one -> 429 with retry-after. None: no limit
    redis_url: str | None = None  # unset: each process counts on its own (the embedded default)
    redis_password: str = ""  # redis-server's --requirepass (required in production with a URL)
    ratelimit_window_seconds: float = Field(60.0, gt=0)
    ratelimit_requests_per_minute: int | None = Field(3000, ge=1)
    ratelimit_tokens_per_minute: int | None = Field(2_000_000, ge=1)
    ratelimit_key_requests_per_minute: int | None = Field(None, ge=1)
    ratelimit_key_tokens_per_minute: int | None = Field(None, ge=1)
    ratelimit_fail_open: bool = True  # when the limiter cannot answer: admit (True) or 503 (False)
    # per org on the management APIs (everything under /v1 but the three inference POSTs), in every service
    ratelimit_management_requests_per_minute: int | None = Field(1200, ge=1)
    # concurrency per org, held as leases that expire lease_ttl_seconds after their holder's last renewal
    # (a replica that crashed frees its leases by then): streams are SSE /v1/events and streamed responses
    ratelimit_concurrent_streams: int | None = Field(100, ge=1)
    ratelimit_concurrent_uploads: int | None = Field(32, ge=1)  # part and file uploads being received
    ratelimit_upload_bytes_in_flight: int | None = Field(8 * 1024**3, ge=1)  # their Content-Lengths summed
    lease_ttl_seconds: float = Field(30.0, gt=0)

    # fair scheduling across orgs before the shared queue: an org has at most fair_org_inflight_jobs jobs per
    # model published and not finished, a model at most fair_model_inflight_jobs; the rest wait at the router
    # in per-org queues drained by deficit round-robin over their estimated tokens
    fair_scheduling: bool = True
    fair_org_inflight_jobs: int | None = Field(8, ge=1)
    fair_model_inflight_jobs: int = Field(64, ge=1)
    fair_quantum_tokens: int = Field(512, ge=1)  # about one request of the default max_tokens per turn
    fair_org_queue: int = Field(1000, ge=1)  # requests one org may have waiting at one router replica
    worker_org_max_running: int | None = Field(None, ge=1)  # per org in a worker's batch; None: half of it
    # adapter residency on a worker: comma-separated LoRA ids never evicted once loaded (fewer than the slots);
    # a request that waited longer than the bound for a slot evicts the least recently used adapter anyway;
    # the eviction policy's use scores halve every half-life
    worker_pinned_loras: str = ""
    worker_slot_wait_bound_seconds: float = Field(5.0, gt=0)
    worker_adapter_half_life_seconds: float = Field(60.0, gt=0)

    # webhook deliveries: a failed attempt (timeout, connection error, non-2xx) is retried after a random delay in
    # [0, min(cap, base·2^(n-1))] until webhook_retry_seconds after the first attempt; an endpoint whose attempts
    # have failed without a success for webhook_disable_after_seconds is disabled
    webhook_retry_seconds: float = Field(72 * 3600.0, gt=0)
    webhook_retry_base_seconds: float = Field(5.0, gt=0)
    webhook_retry_cap_seconds: float = Field(3600.0, gt=0)
    webhook_disable_after_seconds: float = Field(72 * 3600.0, gt=0)
    webhook_delivery_concurrency: int = Field(64, ge=1)  # attempts in flight per webhooks process
    webhook_poll_seconds: float = Field(0.5, gt=0)  # how often due retries are looked for (new events wake it)
    webhook_delivery_retention_seconds: float = Field(30 * 24 * 3600.0, gt=0)  # the delivery log of ended ones
