"""The job model and its state machine: the only place that knows which
status may follow which.

The repository turns each ``Transition`` into one guarded
``UPDATE ... WHERE job_id = $1 AND status = <source> [AND lease_owner = $n]``;
zero rows means another actor won the race and the caller drops its work.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

__all__ = [
    "CANCELLED",
    "TERMINAL",
    "Job",
    "JobEvent",
    "JobStatus",
    "Transition",
    "input_key",
    "results_key",
    "results_prefix",
]

#: ``error_message`` of a cancelled job.
CANCELLED = "Cancelled"


class JobStatus(enum.StrEnum):
    #: Waiting for a worker (new, retrying, released or requeued).
    PENDING = "pending"
    #: Claimed by a worker whose lease is alive.
    RUNNING = "running"
    #: Ended without results; ``error_message`` says why.
    FAILED = "failed"
    #: Ended with results at ``output_path``.
    COMPLETED = "completed"


TERMINAL = frozenset({JobStatus.FAILED, JobStatus.COMPLETED})


class Transition(enum.Enum):
    """Every legal status change: ``(name, source, target, needs the lease)``.

    The name is part of the value so that two transitions between the same
    statuses (RETRY and RELEASE) stay distinct members, not aliases.
    """

    #: A worker takes a pending job (counts an attempt).
    CLAIM = ("claim", JobStatus.PENDING, JobStatus.RUNNING, False)
    #: The worker finished and stored the results.
    COMPLETE = ("complete", JobStatus.RUNNING, JobStatus.COMPLETED, True)
    #: Permanent error, or attempts used up.
    FAIL = ("fail", JobStatus.RUNNING, JobStatus.FAILED, True)
    #: Transient error with attempts left: back to pending, via a retry tier.
    RETRY = ("retry", JobStatus.RUNNING, JobStatus.PENDING, True)
    #: Worker shutting down hands its job back (the attempt is not counted).
    RELEASE = ("release", JobStatus.RUNNING, JobStatus.PENDING, True)
    #: The janitor found the lease expired (the worker died).
    EXPIRE = ("expire", JobStatus.RUNNING, JobStatus.PENDING, False)
    #: The janitor found the lease expired and no attempts left.
    EXPIRE_FAIL = ("expire_fail", JobStatus.RUNNING, JobStatus.FAILED, False)
    #: An operator replays a failed job.
    REPLAY = ("replay", JobStatus.FAILED, JobStatus.PENDING, False)
    #: The client cancels a job no worker has claimed yet.
    CANCEL = ("cancel", JobStatus.PENDING, JobStatus.FAILED, False)

    @property
    def source(self) -> JobStatus:
        return self.value[1]

    @property
    def target(self) -> JobStatus:
        return self.value[2]

    @property
    def needs_lease(self) -> bool:
        """True when only the lease owner may make this transition."""
        return self.value[3]

    @classmethod
    def allowed(cls, source: JobStatus, target: JobStatus) -> bool:
        return any(t.source is source and t.target is target for t in cls)


def input_key(job_id: UUID) -> str:
    """Object key of a job's upload: derived from the id, never the file name."""
    return f"inputs/{job_id}.mp4"


def results_key(job_id: UUID) -> str:
    """Object key of a job's results document."""
    return f"results/{job_id}.json"


def results_prefix(job_id: UUID) -> str:
    """Every object of a job's results starts with this (the document, and
    any pages or index stored beside it): retention and erasure delete them all."""
    return f"results/{job_id}"


@dataclass(frozen=True, slots=True)
class Job:
    """One row of the job table."""

    job_id: UUID
    status: JobStatus
    created_at: datetime
    updated_at: datetime
    input_path: str
    output_path: str | None
    error_message: str | None
    progress: float
    attempts: int
    pipeline: str
    options: dict[str, Any] = field(default_factory=dict)
    lease_owner: str | None = None
    lease_expires_at: datetime | None = None
    published_at: datetime | None = None
    #: When its copy reached the dead-letter queue (failed jobs only).
    parked_at: datetime | None = None
    input_bytes: int | None = None
    #: Size of the results document (set with ``completed``).
    output_bytes: int | None = None
    #: The API client that submitted the job; no other client sees it.
    client_id: str = "anonymous"
    idempotency_key: str | None = None
    #: Hash of the submit's parameters and file, to tell a retry from a reuse.
    request_hash: str | None = None
    tag: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    #: The client asked to cancel while the job was running.
    cancel_requested: bool = False
    #: When it reached failed or completed (retention counts from here).
    finished_at: datetime | None = None
    #: False for a ``source=`` input: the client's object, never deleted.
    input_owned: bool = True
    #: When retention deleted the input (the row stays).
    input_deleted_at: datetime | None = None
    #: When retention deleted the results (``GET /results`` is then 410).
    results_expired_at: datetime | None = None
    #: Erasure was asked for: the job is erased once it is failed or completed.
    erase_requested: bool = False
    #: Where the job's end is announced (a signed webhook), if anywhere.
    callback_url: str | None = None

    @property
    def frame_stride(self) -> int:
        return int(self.options.get("frame_stride", 1))

    @property
    def sampling(self) -> str:
        """``exact``, ``fast`` or ``keyframes`` (``shared.pipeline.sampling.Sampling``)."""
        return str(self.options.get("sampling", "exact"))

    @property
    def max_frames(self) -> int | None:
        value = self.options.get("max_frames")
        return None if value is None else int(value)


@dataclass(frozen=True, slots=True)
class JobEvent:
    """A status change, as published on the ``videoq.events`` exchange."""

    event_id: int
    job_id: UUID
    status: JobStatus
    attempt: int
    tag: str | None
    occurred_at: datetime
    #: A webhook is owed: the job has a ``callback_url`` and this event ends it.
    webhook: bool = False

    @property
    def routing_key(self) -> str:
        return f"job.{self.status.value}"

    def body(self) -> bytes:
        """Compact JSON: job_id, status, tag, timestamp (ISO 8601, UTC), attempt."""
        return json.dumps(
            {
                "job_id": str(self.job_id),
                "status": self.status.value,
                "tag": self.tag,
                "timestamp": self.occurred_at.isoformat(),
                "attempt": self.attempt,
            },
            separators=(",", ":"),
        ).encode()
