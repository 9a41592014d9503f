"""What a webhook says, and what the log keeps of each attempt to say it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shared.jobs import Job

__all__ = ["DeliveryAttempt", "build_body", "webhook_id"]


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliveryAttempt:
    """One attempt to deliver a webhook, as ``GET /video/jobs/{id}/deliveries`` shows it."""

    webhook_id: str
    #: The event type, ``job.completed`` or ``job.failed``.
    type: str
    #: 1 for the first attempt of this delivery, 2 for its first retry, ...
    attempt: int
    #: The receiver's HTTP status; ``None`` when no answer came.
    status_code: int | None
    #: Why the attempt failed (no secret, no response body); ``None`` on success.
    error: str | None
    at: datetime
    #: When the next attempt is due; ``None`` when there is none (delivered,
    #: failed for good, or parked).
    next_attempt_at: datetime | None = None


def webhook_id(job_id: str, event_id: int) -> str:
    """The ``webhook-id`` of the webhook for one job event: the same for
    every attempt and redelivery of it, so a receiver can drop repeats."""
    return f"msg_{job_id.replace('-', '')}_{event_id}"


def build_body(event_type: str, job: Job, *, timestamp: datetime, attempt: int) -> bytes:
    """The webhook body (compact JSON), from the job row as it is now.

    ``attempt`` is the job's attempt the event was about (from the event),
    so a ``job.failed`` about attempt 3 stays about attempt 3.
    """
    data: dict[str, Any] = {
        "job_id": str(job.job_id),
        "status": event_type.removeprefix("job."),
        "tag": job.tag,
        "metadata": job.metadata,
        "attempt": attempt,
        "error_message": job.error_message,
    }
    document = {"type": event_type, "timestamp": timestamp.isoformat(), "data": data}
    return json.dumps(document, separators=(",", ":")).encode()
