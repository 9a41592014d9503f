"""The outbox: the messages committed rows owe, sent after the commit.

The job table is the outbox. A ``pending`` job whose ``published_at`` is
empty is owed its work message; a job that failed for good (not a cancelled
one) whose ``parked_at`` is empty is owed a copy in the dead-letter queue
``videoq.dead.jobs``; a ``job_events`` row whose ``published_at`` is empty is
owed its event (and, when it ends a job that has a ``callback_url``, its
webhook delivery). The words for what happens to them:

- **publish**: send a job's work message to the broker;
- **park**: put a copy of a failed job in the dead-letter queue;
- **record**: mark the row as sent (``published_at``, ``parked_at``).

A message goes out only once the row that owes it is committed (a worker
must find the row as the message says), and the record comes after the send:
a crash between the two costs a duplicate (claims are guarded), never a lost
message. When the broker or the database is away, the api, the worker and
``videoq dlq`` log the deferral and go on (``job.publish_deferred``,
``job.park_deferred``, ``job.record_deferred``); the janitor's sweeps below
send what is still owed, holding the rows locked so that two janitors never
send the same one, and a send that fails rolls its sweep back for the next.
"""

from __future__ import annotations

import logging
from uuid import UUID

from shared.broker import Broker
from shared.errors import DependencyUnavailable
from shared.jobs import Job, JobEvent
from shared.payload import build_payload
from shared.repository import ExpiredLeases, JanitorRepository, JobRepository

__all__ = [
    "expire_leases",
    "park_and_record",
    "park_owed",
    "publish",
    "publish_and_record",
    "publish_owed",
    "publish_owed_events",
    "record_published",
]

log = logging.getLogger("videoq.outbox")

# --- one job, now: the api, the worker, videoq dlq --------------------------------


async def publish(
    broker: Broker, job_id: UUID, *, attempt: int = 0, tier: str | None = None
) -> bool:
    """Publish the work message of a committed ``pending`` job (after retry
    ``tier``'s delay, when given); record it next with ``record_published``.

    Returns ``False`` when the broker is away (logged ``job.publish_deferred``):
    the row stays unpublished and the janitor publishes it.
    """
    try:
        await broker.publish_job(job_id, attempt=attempt, tier=tier)
    except DependencyUnavailable as exc:
        log.warning("job.publish_deferred", extra={"job_id": str(job_id), "error": str(exc)})
        return False
    return True


async def record_published(repo: JobRepository, job_id: UUID) -> None:
    """Record that the job's work message is published.

    When the database is away, log ``job.record_deferred``: the janitor
    publishes the job once more (a harmless duplicate) and records that.
    """
    try:
        await repo.mark_published(job_id)
    except DependencyUnavailable as exc:
        log.warning(
            "job.record_deferred",
            extra={"job_id": str(job_id), "record": "published", "error": str(exc)},
        )


async def publish_and_record(
    broker: Broker, repo: JobRepository, job_id: UUID, *, attempt: int, tier: str | None = None
) -> None:
    """``publish``, then ``record_published`` if the broker confirmed."""
    if await publish(broker, job_id, attempt=attempt, tier=tier):
        await record_published(repo, job_id)


async def park_and_record(broker: Broker, repo: JobRepository, job: Job, *, reason: str) -> bool:
    """Park a copy of a job that failed for good (with its ``reason``), then
    record it. Returns whether the copy is parked.

    When the broker is away, log ``job.park_deferred``; when the database is
    away after the park, ``job.record_deferred``: the janitor parks the copy
    (once more) and records that.
    """
    extra = {"job_id": str(job.job_id), "attempt": job.attempts}
    try:
        await _park(broker, job, reason=reason)
    except DependencyUnavailable as exc:
        log.warning("job.park_deferred", extra={**extra, "error": str(exc)})
        return False
    try:
        await repo.mark_parked(job.job_id)
    except DependencyUnavailable as exc:
        log.warning("job.record_deferred", extra={**extra, "record": "parked", "error": str(exc)})
    return True


async def _park(broker: Broker, job: Job, *, reason: str) -> None:
    await broker.park(
        build_payload(job.job_id), reason=reason, job_id=str(job.job_id), attempt=job.attempts
    )


# --- the janitor's sweeps: what is still owed ----------------------------------------


async def expire_leases(
    broker: Broker, repo: JanitorRepository, *, max_attempts: int, limit: int
) -> ExpiredLeases:
    """Requeue running jobs whose lease expired and publish them; fail those
    whose attempts are used up and park their copies.

    Raises:
        DependencyUnavailable: the database, or the broker for a park, is
            away (nothing changed: the next sweep tries again).
    """
    async with repo.expire_leases(max_attempts=max_attempts, limit=limit) as expired:
        # Inside the transaction, which recorded parked_at already: a
        # parked copy has no consumer to race the commit, and a failed park
        # rolls the whole sweep back.
        for job in expired.failed:
            await _park(broker, job, reason=job.error_message or "lease expired")
    # After the commit: a worker that received the message while the row
    # still read running would drop it as a duplicate and strand the job. If
    # this publish fails, the job is owed its message: publish_owed sends it.
    for job in expired.requeued:
        await publish_and_record(broker, repo, job.job_id, attempt=job.attempts)
    return expired


async def publish_owed(
    broker: Broker,
    repo: JanitorRepository,
    *,
    grace_seconds: float,
    republish_after_seconds: float,
    limit: int,
) -> list[Job]:
    """Publish and record the pending jobs that nobody recorded as published
    for ``grace_seconds``, or that were published more than
    ``republish_after_seconds`` ago and never claimed (the message is probably
    lost). Returns them.

    Raises:
        DependencyUnavailable: the database or the broker is away (nothing
            recorded: the next sweep publishes them again).
    """
    async with repo.lock_unpublished(
        grace_seconds=grace_seconds, republish_after_seconds=republish_after_seconds, limit=limit
    ) as owed:
        for job in owed.rows:
            await broker.publish_job(job.job_id, attempt=job.attempts)
        await owed.record(owed.rows)
    return owed.rows


async def park_owed(
    broker: Broker, repo: JanitorRepository, *, grace_seconds: float, limit: int
) -> list[Job]:
    """Park and record the copies of jobs that failed for good more than
    ``grace_seconds`` ago while the broker (or the database) was away.
    Returns them.

    Raises:
        DependencyUnavailable: as ``publish_owed``.
    """
    async with repo.lock_unparked(grace_seconds=grace_seconds, limit=limit) as owed:
        for job in owed.rows:
            await _park(broker, job, reason=job.error_message or "failed")
        await owed.record(owed.rows)
    return owed.rows


async def publish_owed_events(
    broker: Broker, repo: JanitorRepository, *, limit: int
) -> list[JobEvent]:
    """Publish and record unpublished status events in the order they
    happened (one janitor at a time), each event that ends a job with a
    ``callback_url`` also to the webhook delivery queue. Returns them.

    Raises:
        DependencyUnavailable: as ``publish_owed``.
    """
    async with repo.lock_unpublished_events(limit=limit) as owed:
        for event in owed.rows:
            await broker.publish_event(event)
            if event.webhook:
                await broker.publish_webhook(
                    event.body(), message_id=f"{event.job_id}:{event.event_id}", attempts=0
                )
        await owed.record(owed.rows)
    return owed.rows
