"""The one settings object. Built once in each entry point and passed in.

Every field is read from an environment variable with the ``VIDEOQ_`` prefix
(``amqp_url`` <- ``VIDEOQ_AMQP_URL``). Business code never reads the
environment itself.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
from typing import Annotated, Any

from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

__all__ = ["Settings", "parse_webhook_secrets", "redact_url"]


def parse_webhook_secrets(value: SecretStr) -> dict[str, SecretStr]:
    """``client_id:whsec_<base64>,...`` as client id -> key bytes (base64, kept secret).

    Raises:
        ValueError: an entry is malformed (the message names its position, not its value).
    """
    secrets: dict[str, SecretStr] = {}
    for number, entry in enumerate(value.get_secret_value().split(","), start=1):
        if not entry.strip():
            continue
        client, sep, secret = entry.strip().partition(":")
        if not sep or not client or not secret.startswith("whsec_"):
            raise ValueError(f"webhook_secrets entry {number} is not client_id:whsec_<base64>")
        try:
            base64.b64decode(secret.removeprefix("whsec_"), validate=True)
        except binascii.Error:
            raise ValueError(f"webhook_secrets entry {number}: the key is not base64") from None
        secrets[client] = SecretStr(secret.removeprefix("whsec_"))
    return secrets


def redact_url(url: str) -> str:
    """Return ``url`` with any password replaced by ``***`` (safe to log)."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    creds, _, host = rest.rpartition("@")
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}" if ":" in creds else url


class Settings(BaseSettings):
    """videoq's configuration; see the README's settings table."""

    # hide_input_in_errors: a refused value may be a secret (webhook_secrets, a URL).
    model_config = SettingsConfigDict(
        env_prefix="VIDEOQ_", extra="ignore", frozen=True, hide_input_in_errors=True
    )

    #: RabbitMQ connection URL.
    amqp_url: SecretStr = SecretStr("amqp://guest:guest@127.0.0.1:5672/")
    #: PostgreSQL connection URL.
    database_url: SecretStr = SecretStr("postgresql://postgres@127.0.0.1:5432/videoq")
    #: Object store: ``s3://bucket[/prefix]`` or ``file:///path``.
    storage_url: str = "s3://videoq"
    #: S3 endpoint (MinIO, moto); credentials come from the usual ``AWS_*`` variables.
    s3_endpoint_url: str | None = None
    s3_region: str = "us-east-1"
    #: Direct uploads (docs/uploads.md): the S3 endpoint their part URLs are
    #: signed for, the one clients reach (default: ``s3_endpoint_url``)...
    s3_public_endpoint_url: str | None = None
    #: ...and how long an upload and its part URLs last (S3 caps presigned
    #: URLs at 7 days); the janitor aborts it after that.
    upload_expiry_seconds: int = Field(default=86400, gt=0, le=7 * 86400)

    #: Uploads larger than this are refused with 413 (the rest is not read).
    max_upload_bytes: int = Field(default=2 * 1024**3, gt=0)
    #: Claims a job may have before it fails for good.
    max_attempts: int = Field(default=5, ge=1)
    #: How long a worker's claim lasts without a heartbeat.
    lease_seconds: float = Field(default=30.0, gt=0)
    #: Delays of the retry tiers, in seconds, shortest first.
    retry_delays: Annotated[tuple[float, ...], NoDecode] = (10.0, 60.0, 600.0)
    #: A job running longer than this is stopped and retried (keep it below
    #: the broker's consumer_timeout).
    job_timeout_seconds: float = Field(default=1200.0, gt=0)
    #: How often the janitor sweeps.
    janitor_interval_seconds: float = Field(default=5.0, gt=0)
    #: A pending job not confirmed as published for this long is published again.
    outbox_grace_seconds: float = Field(default=15.0, gt=0)
    #: A pending job whose message was published this long ago without being
    #: claimed is published again (the message is probably lost).
    republish_after_seconds: float = Field(default=1800.0, gt=0)
    #: A submit's ``Idempotency-Key`` is honoured this long after the job was
    #: created; then the janitor forgets it and the client may use it again.
    idempotency_ttl_seconds: float = Field(default=86400.0, gt=0)
    #: The quorum queue's delivery limit (crash loops before a claim).
    delivery_limit: int = Field(default=10, ge=1)
    #: How long a worker finishes its job in hand after SIGTERM before handing it back.
    shutdown_grace_seconds: float = Field(default=25.0, ge=0)
    #: Jobs one client may have pending or running at once; a submit beyond
    #: it is answered 429 with Retry-After (0: no limit).
    max_jobs_in_flight: int = Field(default=0, ge=0)
    #: Jobs one worker process runs at once.
    worker_concurrency: int = Field(default=1, ge=1)
    #: A delivery that has waited this long in a busy worker for a free slot
    #: is handed back to the queue, and the worker stops consuming until a
    #: slot frees (short jobs never wait this long; long ones should not hold
    #: the next job while another worker is idle).
    worker_handoff_seconds: float = Field(default=2.0, gt=0)
    #: Progress is written at most this often (coarse, never per frame).
    progress_interval_seconds: float = Field(default=2.0, gt=0)

    #: API keys, as ``client_id:sha256-hex-of-key`` entries separated by
    #: commas (``videoq hash-key`` prints the hash). Keep it in a Secret.
    api_keys: SecretStr | None = None
    #: Serve without authentication (``videoq dev`` does); refused otherwise
    #: unless set explicitly.
    auth_disabled: bool = False

    #: Largest video the worker analyses; larger ones fail permanently.
    max_video_width: int = Field(default=7680, ge=1)
    max_video_height: int = Field(default=4320, ge=1)
    #: Longest video the worker analyses (seconds); 0 means no limit.
    max_video_duration_seconds: float = Field(default=4 * 3600, ge=0)

    default_pipeline: str = "basic"
    default_frame_stride: int = Field(default=1, ge=1)
    max_frames_limit: int = Field(default=100_000, ge=1)
    #: A damaged video whose share of undecodable frames is larger than this
    #: fails ("Unable to read video file"); up to it, what decodes is analysed.
    max_undecodable_fraction: float = Field(default=0.5, ge=0, le=1)
    #: FFmpeg decoder threads per job. 0: FFmpeg's own choice for one job at a
    #: time, the CPUs divided by ``worker_concurrency`` (at least 1) for more,
    #: so that jobs side by side do not oversubscribe the CPUs.
    decoder_threads: int = Field(default=0, ge=0)

    #: Results documents of at least this many bytes get an index of their
    #: entries beside them (``<key>.index``), so a page of results is a few
    #: ranged reads; smaller ones are read whole for a page (cheap), which
    #: spares the worker an upload per job.
    results_index_min_bytes: int = Field(default=256 * 1024, ge=0)

    #: Topology names (what SREs see in the management UI).
    exchange_jobs: str = "videoq.jobs"
    queue_process: str = "videoq.jobs.process"
    exchange_retry: str = "videoq.retry"
    exchange_dead: str = "videoq.dead"
    queue_dead: str = "videoq.dead.jobs"
    #: Topic exchange of job status events (routing keys ``job.<status>``).
    exchange_events: str = "videoq.events"

    # --- webhooks (docs/webhooks.md) -------------------------------------------
    #: Signing secrets, ``client_id:whsec_<base64>`` pairs separated by commas
    #: (a client without one gets no webhooks). Keep it in a Secret.
    webhook_secrets: SecretStr | None = None
    #: Delays of the webhook retry tiers, in seconds, shortest first; a
    #: delivery that fails once more after the last is parked.
    webhook_retry_delays: Annotated[tuple[float, ...], NoDecode] = (
        10.0,
        60.0,
        600.0,
        3600.0,
        21600.0,
    )
    #: Allow ``http://`` callback URLs (tests, a receiver on a private network).
    webhook_allow_http: bool = False
    #: CIDRs a callback host may resolve into although they are not public.
    webhook_allow_networks: Annotated[tuple[str, ...], NoDecode] = ()
    #: One attempt's time limit (connect, send, first byte), in seconds.
    webhook_timeout_seconds: float = Field(default=5.0, gt=0)
    #: Deliveries one notifier sends at once.
    webhook_concurrency: int = Field(default=8, ge=1)
    exchange_webhooks: str = "videoq.webhooks"
    queue_webhooks: str = "videoq.webhooks.deliver"
    exchange_webhooks_retry: str = "videoq.webhooks.retry"
    exchange_webhooks_dead: str = "videoq.webhooks.dead"
    queue_webhooks_dead: str = "videoq.dead.webhooks"

    #: Apply pending migrations at start-up (under an advisory lock). Turn it
    #: off where a Kubernetes Job runs ``videoq migrate`` once per rollout.
    migrate_on_start: bool = True
    #: Extra pipeline plugins, "module:function" each, called with the registry.
    plugins: Annotated[tuple[str, ...], NoDecode] = ()

    #: Retention, in seconds (0: keep forever). Inputs and results count from
    #: the end of their job; the job row (and whatever it still has in the
    #: store) too. The janitor deletes; a source= input is never deleted.
    input_retention_seconds: float = Field(default=0, ge=0)
    results_retention_seconds: float = Field(default=0, ge=0)
    job_retention_seconds: float = Field(default=0, ge=0)
    #: Where ``source=`` inputs may be read from, per client:
    #: ``client_id:s3://bucket/prefix/`` entries separated by commas (a
    #: prefix is a folder: a missing trailing ``/`` is added). None: 403.
    source_prefixes: Annotated[tuple[tuple[str, str], ...], NoDecode] = ()

    #: Port of the worker's and janitor's health and metrics endpoint (0: off).
    ops_port: int = Field(default=9100, ge=0, le=65535)
    log_format: str = Field(default="json", pattern="^(json|text)$")
    log_level: str = "INFO"

    @field_validator("retry_delays", "webhook_retry_delays", mode="before")
    @classmethod
    def _parse_delays(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(float(part) for part in value.split(",") if part.strip())
        return value

    @field_validator("plugins", "webhook_allow_networks", mode="before")
    @classmethod
    def _parse_plugins(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("source_prefixes", mode="before")
    @classmethod
    def _parse_source_prefixes(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        grants = []
        for entry in filter(None, (part.strip() for part in value.split(","))):
            client, sep, prefix = entry.partition(":")
            bucket = prefix.partition("://")[2].partition("/")[0]
            if not sep or not client or not prefix.startswith(("s3://", "file://")):
                raise ValueError(
                    f"source_prefixes entry {entry!r} is not client_id:s3://bucket/prefix/"
                )
            if prefix.startswith("s3://") and not bucket:
                raise ValueError(f"source_prefixes entry {entry!r} names no bucket")
            grants.append((client, prefix if prefix.endswith("/") else prefix + "/"))
        return tuple(grants)

    @field_validator("retry_delays", "webhook_retry_delays")
    @classmethod
    def _check_delays(cls, value: tuple[float, ...], info: ValidationInfo) -> tuple[float, ...]:
        if not value or any(d <= 0 for d in value):
            raise ValueError(f"{info.field_name} needs at least one positive delay")
        if list(value) != sorted(value):
            raise ValueError(f"{info.field_name} must be in increasing order")
        return value

    @field_validator("webhook_allow_networks")
    @classmethod
    def _check_networks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for cidr in value:
            ipaddress.ip_network(cidr, strict=False)  # ValueError names the bad one
        return value

    @field_validator("webhook_secrets")
    @classmethod
    def _check_secrets(cls, value: SecretStr | None) -> SecretStr | None:
        # Parsed here so a malformed entry stops the start-up; the message
        # never repeats the value (a secret).
        if value is not None:
            parse_webhook_secrets(value)
        return value

    @model_validator(mode="after")
    def _check_storage(self) -> Settings:
        if not self.storage_url.startswith(("s3://", "file://")):
            raise ValueError("storage_url must start with s3:// or file://")
        return self

    def redacted(self) -> dict[str, Any]:
        """The settings as a dict that is safe to log: no passwords."""
        data = self.model_dump()
        data["amqp_url"] = redact_url(self.amqp_url.get_secret_value())
        data["database_url"] = redact_url(self.database_url.get_secret_value())
        data["api_keys"] = "***" if self.api_keys else None
        data["webhook_secrets"] = "***" if self.webhook_secrets else None
        return data
