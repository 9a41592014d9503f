"""Prometheus metrics, built once per process on a registry of its own.

Names follow Prometheus conventions: ``videoq_<what>_<unit|total>``. Labels
are low-cardinality only (pipeline, route, status): never a job id, never a
client secret.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["CONTENT_TYPE", "Metrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_JOB_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200)
_HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, 60)


class Metrics:
    """Every metric videoq exports."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.jobs_submitted = Counter(
            "videoq_jobs_submitted_total", "Jobs accepted by the api", ["pipeline"], registry=r
        )
        self.jobs_completed = Counter(
            "videoq_jobs_completed_total", "Jobs that completed", ["pipeline"], registry=r
        )
        self.jobs_failed = Counter(
            "videoq_jobs_failed_total", "Jobs that failed for good", ["pipeline"], registry=r
        )
        self.jobs_cancelled = Counter(
            "videoq_jobs_cancelled_total",
            "Jobs cancelled by their client",
            ["pipeline"],
            registry=r,
        )
        self.events_published = Counter(
            "videoq_events_published_total",
            "Job status events published to the events exchange",
            registry=r,
        )
        self.jobs_retried = Counter(
            "videoq_jobs_retried_total",
            "Jobs sent to a retry tier",
            ["pipeline", "tier"],
            registry=r,
        )
        self.jobs_parked = Counter(
            "videoq_jobs_parked_total",
            "Messages parked in the dead-letter queue",
            ["reason"],
            registry=r,
        )
        # outcome: delivered, retried, parked, dropped (job gone, no secret)
        self.webhook_attempts = Counter(
            "videoq_webhook_attempts_total",
            "Webhook delivery attempts by the notifier, by outcome",
            ["outcome"],
            registry=r,
        )
        # outcome: completed, failed, retried, released, cancelled, lost, unrecorded
        self.job_duration = Histogram(
            "videoq_job_duration_seconds",
            "Time from claim to the end of one attempt",
            ["pipeline", "outcome"],
            buckets=_JOB_BUCKETS,
            registry=r,
        )
        self.queue_wait = Histogram(
            "videoq_job_queue_wait_seconds",
            "Time from submit (or requeue) to claim",
            ["pipeline"],
            buckets=_JOB_BUCKETS,
            registry=r,
        )
        self.upload_bytes = Counter(
            "videoq_upload_bytes_total", "Bytes of accepted uploads", registry=r
        )
        self.frames_processed = Counter(
            "videoq_frames_processed_total", "Sampled frames analysed", ["pipeline"], registry=r
        )
        self.jobs_in_flight = Gauge(
            "videoq_jobs_in_flight", "Jobs this worker process is running now", registry=r
        )
        self.janitor_requeued = Counter(
            "videoq_janitor_requeued_total", "Expired leases sent back to pending", registry=r
        )
        self.janitor_expired_failed = Counter(
            "videoq_janitor_expired_failed_total",
            "Expired leases failed because attempts were used up",
            registry=r,
        )
        self.outbox_published = Counter(
            "videoq_outbox_published_total",
            "Pending jobs published by the outbox sweep",
            registry=r,
        )
        # kind: input, results (retention; the row stays), job (erased: by
        # request or past job retention, with whatever objects it had left)
        self.retention_deleted = Counter(
            "videoq_retention_deleted_total",
            "What retention and erasure deleted",
            ["kind"],
            registry=r,
        )
        self.uploads_expired = Counter(
            "videoq_janitor_uploads_expired_total",
            "Direct uploads past their expiry that the janitor aborted, parts deleted",
            registry=r,
        )
        self.http_latency = Histogram(
            "videoq_http_request_duration_seconds",
            "HTTP request latency",
            ["method", "route", "status"],
            buckets=_HTTP_BUCKETS,
            registry=r,
        )

    def render(self) -> bytes:
        """The text exposition format, for ``/metrics``."""
        return generate_latest(self.registry)
