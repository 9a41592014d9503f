"""The job repository ports: what the services need from the job table.

``JobRepository`` is what the api and the worker use: job rows and their
guarded transitions. ``JanitorRepository`` adds the sweeps, each yielding the
rows it found as ``LockedRows`` (or ``ExpiredLeases``) that stay locked until
the caller's ``async with`` block exits; ``shared.outbox`` sends what they owe.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, Literal, Protocol, TypeVar
from uuid import UUID

from shared.jobs import Job, JobEvent, JobStatus
from shared.uploads import UploadRecord
from shared.webhooks.model import DeliveryAttempt

__all__ = ["ExpiredLeases", "JanitorRepository", "JobRepository", "LockedRows", "Retained"]

RowT = TypeVar("RowT")
#: What a retention sweep deletes while the job row stays.
Retained = Literal["input", "results"]


@dataclass(frozen=True)
class LockedRows(Generic[RowT]):
    """Rows a sweep found, held locked by its open transaction until the
    ``async with`` block exits: no other sweep (another janitor) gets them
    meanwhile. Leaving the block commits what ``record`` wrote; an exception
    rolls it all back, so the rows stay owed and a later sweep takes them."""

    rows: list[RowT]
    _record: Callable[[Sequence[RowT]], Awaitable[None]]

    async def record(self, rows: Sequence[RowT]) -> None:
        """Mark ``rows`` as sent (``published_at``, or ``parked_at``), in the
        same transaction."""
        if rows:
            await self._record(rows)


@dataclass(frozen=True)
class ExpiredLeases:
    """What one lease sweep did, its rows locked until the block exits (which
    commits): ``requeued`` jobs are ``pending`` and unpublished, ``failed``
    ones used up their attempts and have ``parked_at`` set already, so their
    copies must be parked inside the block (or the block must raise)."""

    requeued: list[Job]
    failed: list[Job]


class JobRepository(Protocol):
    """Job rows and their guarded transitions.

    Every transition method returns the updated ``Job``, or ``None`` when the
    guard did not match (another actor won the race): the caller then drops
    its work, it never overwrites.

    Raises:
        DependencyUnavailable: the database could not be reached.
    """

    async def ping(self) -> None: ...

    async def close(self) -> None: ...

    async def create(
        self,
        *,
        job_id: UUID,
        input_path: str,
        pipeline: str,
        options: dict[str, Any],
        input_bytes: int,
        client_id: str = "anonymous",
        idempotency_key: str | None = None,
        request_hash: str | None = None,
        tag: str | None = None,
        metadata: dict[str, Any] | None = None,
        input_owned: bool = True,
        callback_url: str | None = None,
        upload_id: UUID | None = None,
    ) -> Job | None:
        """``None`` when the client's ``idempotency_key`` is taken. With
        ``upload_id``, the completed upload becomes the job's input at once,
        or ``JobConflict`` (not completed, or submitted already)."""

    async def create_upload(
        self,
        *,
        upload_id: UUID,
        client_id: str,
        key: str,
        store_upload_id: str,
        size: int,
        part_size: int,
        expires_in_seconds: float,
    ) -> UploadRecord: ...

    async def get_upload(self, upload_id: UUID) -> UploadRecord | None: ...

    async def mark_upload_completed(self, upload_id: UUID) -> UploadRecord | None:
        """``open`` -> ``completed``; ``None`` when it was not open."""

    async def delete_upload(self, upload_id: UUID) -> bool:
        """Forget an upload no job took over; ``False`` if there was none."""

    async def by_idempotency_key(self, *, client_id: str, key: str) -> Job | None: ...

    async def count_in_flight(self, client_id: str) -> int: ...

    async def list_jobs(
        self,
        *,
        client_id: str,
        status: JobStatus | None,
        limit: int,
        after: tuple[datetime, UUID] | None,
    ) -> list[Job]: ...

    async def cancel(self, job_id: UUID) -> Job | None: ...

    async def get(self, job_id: UUID) -> Job | None: ...

    async def record_delivery(self, job_id: UUID, attempt: DeliveryAttempt) -> bool:
        """Log one webhook delivery attempt; ``False`` (nothing logged) when
        the job row is gone (erased)."""

    async def list_deliveries(self, job_id: UUID, *, limit: int) -> list[DeliveryAttempt]:
        """The job's webhook delivery attempts, oldest first."""

    async def mark_published(self, job_id: UUID) -> bool:
        """Record that the job's work message is published (``published_at``);
        ``False`` if the job is no longer pending."""

    async def mark_parked(self, job_id: UUID) -> None:
        """Record that a failed job's copy is parked (``parked_at``)."""

    async def claim(self, job_id: UUID, *, owner: str, lease_seconds: float) -> Job | None: ...

    async def heartbeat(
        self, job_id: UUID, *, owner: str, lease_seconds: float, progress: float | None
    ) -> Job | None: ...

    async def complete(
        self, job_id: UUID, *, owner: str, output_path: str, output_bytes: int | None = None
    ) -> Job | None: ...

    async def fail(self, job_id: UUID, *, owner: str, error: str) -> Job | None: ...

    async def retry(self, job_id: UUID, *, owner: str, error: str) -> Job | None: ...

    async def release(self, job_id: UUID, *, owner: str) -> Job | None: ...

    async def replay(self, job_id: UUID) -> Job | None: ...

    async def request_erase(self, job_id: UUID) -> Job | None:
        """Flag the job for erasure (``cancel`` stops one not finished)."""

    async def erase(self, job_id: UUID) -> bool:
        """Delete a finished job's rows (its objects must be gone first);
        ``False`` when it is gone already or not failed/completed."""


class JanitorRepository(JobRepository, Protocol):
    """``JobRepository`` and the janitor's sweeps (embedded mode's start-up
    republish uses one too).

    Each sweep takes at most ``limit`` rows ``FOR UPDATE SKIP LOCKED`` (the
    events sweep: under an advisory lock) in one transaction that lasts as
    long as the caller's ``async with`` block, so two janitors never handle
    the same row.

    Raises:
        DependencyUnavailable: the database could not be reached.
    """

    def expire_leases(
        self, *, max_attempts: int, limit: int
    ) -> AbstractAsyncContextManager[ExpiredLeases]:
        """Running jobs whose lease expired: back to pending (``expire``), or
        failed when their attempts are used up (``expire_fail``)."""

    def lock_unpublished(
        self, *, grace_seconds: float, republish_after_seconds: float, limit: int
    ) -> AbstractAsyncContextManager[LockedRows[Job]]:
        """Pending jobs owed their work message: not recorded as published
        for ``grace_seconds``, or published more than
        ``republish_after_seconds`` ago (the message is probably lost)."""

    def lock_unparked(
        self, *, grace_seconds: float, limit: int
    ) -> AbstractAsyncContextManager[LockedRows[Job]]:
        """Jobs that failed for good (not cancelled ones) more than
        ``grace_seconds`` ago and whose copy is not recorded as parked."""

    def lock_unpublished_events(
        self, *, limit: int
    ) -> AbstractAsyncContextManager[LockedRows[JobEvent]]:
        """Unpublished status events, oldest first. One holder at a time, so
        a job's events go out in the order they happened: while another
        janitor holds them, no rows."""

    def lock_expired_uploads(
        self, *, limit: int
    ) -> AbstractAsyncContextManager[LockedRows[UploadRecord]]:
        """Uploads past ``expires_at`` that no job took over; ``record``
        deletes their rows (after the caller dropped their parts)."""

    async def forget_idempotency_keys(self, *, older_than_seconds: float, limit: int) -> int:
        """Clear the ``Idempotency-Key`` of up to ``limit`` jobs created more
        than ``older_than_seconds`` ago, so their clients may use the keys
        again; returns how many were cleared."""

    async def due_for_erasure(self, *, job_retention_seconds: float, limit: int) -> list[Job]:
        """Failed or completed jobs to erase: erasure was asked for, or
        (``job_retention_seconds`` > 0) they finished longer ago than that."""

    async def unstopped_erasures(self, *, limit: int) -> list[Job]:
        """Jobs whose erasure was asked for that are pending, or running and
        not asked to stop: ``cancel`` them first (the api asks, but a
        retried or released job is pending again, and the api may have died
        between the two)."""

    async def due_for_retention(
        self, what: Retained, *, older_than_seconds: float, limit: int
    ) -> list[Job]:
        """Finished jobs whose ``what`` is past retention and not deleted
        yet, oldest first; never a ``source=`` input."""

    async def record_retained(self, what: Retained, job_ids: Sequence[UUID]) -> None:
        """Record that retention deleted the jobs' ``what``."""
