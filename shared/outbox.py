"""Publishing a pending job's message after its row is committed.

The job table is the outbox: a row that is ``pending`` with ``published_at``
empty is owed a message, and the janitor's outbox sweep sends what nobody
recorded as sent. The worker (retries, hand-backs) and the janitor (lease
requeues) publish through ``publish_pending``; the api publishes on submit
and records it after the 202. A broker or database outage costs a delay,
never a job.
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
) -> None:
    """Publish work for a committed ``pending`` job, then record it as sent.

    When the broker or the database is away, log ``job.publish_deferred``
    and return: the janitor's outbox sweep publishes the job (once more, if
    only the record failed).
    """
    try:
        await broker.publish_job(job_id, attempt=attempt, tier=tier)
        await repo.mark_published(job_id)
    except DependencyUnavailable as exc:
        log.warning("job.publish_deferred", extra={"job_id": str(job_id), "error": str(exc)})
