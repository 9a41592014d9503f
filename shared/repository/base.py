"""The job repository port: what the services need from the job table."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol
from uuid import UUID

from shared.jobs import Job, JobStatus

__all__ = ["JobRepository"]


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
    ) -> Job | None: ...

    async def by_idempotency_key(self, *, client_id: str, key: str) -> Job | None: ...

    async def count_in_flight(self, client_id: str) -> int: ...

    async def mark_parked(self, job_id: UUID) -> None: ...

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

    async def mark_published(self, job_id: UUID) -> bool: ...

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
