"""Publishing a pending job's message after its row is committed.

The job table is the outbox: a row that is ``pending`` with ``published_at``
empty is owed a message, and the janitor's outbox sweep sends what nobody
recorded as sent. Every publisher (worker retries and hand-backs, janitor
requeues) goes through ``publish_pending``, so a broker or database outage
costs a delay, never a job.
"""

from __future__ import annotations

import logging
from uuid import UUID

from shared.broker import Broker
from shared.errors import DependencyUnavailable
from shared.repository import JobRepository

__all__ = ["publish_pending"]

log = logging.getLogger("videoq.outbox")


async def publish_pending(
    broker: Broker, repo: JobRepository, job_id: UUID, *, attempt: int, tier: str | None = None
) -> bool:
    """Publish work for a committed ``pending`` job, then record it as sent.

    Returns ``False`` (and logs ``job.publish_deferred``) when the broker or
    the database is away: the row stays unpublished, or is published once
    more, by the janitor's outbox sweep.
    """
    try:
        await broker.publish_job(job_id, attempt=attempt, tier=tier)
        await repo.mark_published(job_id)
    except DependencyUnavailable as exc:
        log.warning("job.publish_deferred", extra={"job_id": str(job_id), "error": str(exc)})
        return False
    return True
