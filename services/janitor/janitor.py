"""The janitor: the recovery path for work that a crash or an outage stranded.

Each sweep, safe with several replicas (rows are taken with
``FOR UPDATE SKIP LOCKED``, so two janitors never handle the same job):

- running jobs whose lease expired go back to pending and are republished,
  or fail (with a copy parked in the dead-letter queue) when their attempts
  are used up. After a database outage, no lease is expired for one lease
  period: no worker could renew its lease meanwhile, and expiring them all
  would restart every running job (a managed PostgreSQL failover takes
  longer than a lease);
- pending jobs never confirmed as published (the outbox), or published so
  long ago that the message is probably lost, are published again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass

from shared.broker import Broker
from shared.errors import DependencyUnavailable
from shared.jobs import Job
from shared.metrics import Metrics
from shared.outbox import publish_pending
from shared.payload import build_payload
from shared.repository import PostgresJobRepository
from shared.settings import Settings

__all__ = ["Janitor", "SweepReport"]

log = logging.getLogger("videoq.janitor")

#: Jobs handled per sweep and kind; the next sweep takes the rest.
_BATCH = 200


@dataclass(frozen=True)
class SweepReport:
    requeued: int
    failed: int
    published: int
    events: int
    keys_expired: int = 0
    parked: int = 0


class Janitor:
    def __init__(
        self,
        *,
        settings: Settings,
        repo: PostgresJobRepository,
        broker: Broker,
        metrics: Metrics,
    ) -> None:
        self._settings = settings
        self._repo = repo
        self._broker = broker
        self._metrics = metrics
        self._stop = asyncio.Event()
        self._database_was_away = False
        #: No lease is expired before this (time.monotonic()).
        self._expire_from = 0.0

    async def sweep(self) -> SweepReport:
        """One pass of every sweep."""
        try:
            return await self._sweep()
        except DependencyUnavailable as exc:
            if exc.dependency == "database":
                self._database_was_away = True
            raise

    async def _sweep(self) -> SweepReport:

        async def requeue(job: Job) -> None:
            await self._broker.publish_job(job.job_id, attempt=job.attempts)

        async def dead_letter(job: Job) -> None:
            await self._broker.publish_dead(
                build_payload(job.job_id),
                reason=job.error_message or "lease expired",
                job_id=str(job.job_id),
                attempt=job.attempts,
            )

        if self._database_was_away:
            # Back from an outage: give the workers one lease to renew theirs.
            self._database_was_away = False
            self._expire_from = time.monotonic() + self._settings.lease_seconds
            log.info("janitor.lease_grace", extra={"seconds": self._settings.lease_seconds})
        requeued: list[Job] = []
        failed: list[Job] = []
        if time.monotonic() >= self._expire_from:
            requeued, failed = await self._repo.sweep_expired(
                max_attempts=self._settings.max_attempts, limit=_BATCH, dead_letter=dead_letter
            )
        for job in requeued:
            log.warning(
                "janitor.requeued", extra={"job_id": str(job.job_id), "attempt": job.attempts}
            )
            # Committed pending and unpublished: if this publish fails, the
            # outbox sweep below (or the next one) sends it.
            await publish_pending(self._broker, self._repo, job.job_id, attempt=job.attempts)
        for job in failed:
            log.error("janitor.failed", extra={"job_id": str(job.job_id), "attempt": job.attempts})
            self._metrics.jobs_failed.labels(job.pipeline).inc()
        self._metrics.janitor_requeued.inc(len(requeued))
        self._metrics.janitor_expired_failed.inc(len(failed))
        self._metrics.jobs_dead_lettered.labels(reason="lease_expired").inc(len(failed))

        published = await self._repo.sweep_unpublished(
            grace_seconds=self._settings.outbox_grace_seconds,
            republish_after_seconds=self._settings.republish_after_seconds,
            limit=_BATCH,
            publish=requeue,
        )
        for job in published:
            log.info("janitor.published", extra={"job_id": str(job.job_id)})
        self._metrics.outbox_published.inc(len(published))

        parked = await self._repo.sweep_unparked(
            grace_seconds=self._settings.outbox_grace_seconds, limit=_BATCH, park=dead_letter
        )
        for job in parked:
            log.warning("janitor.parked", extra={"job_id": str(job.job_id)})
        self._metrics.jobs_dead_lettered.labels(reason="failed").inc(len(parked))

        events = await self._repo.sweep_events(limit=_BATCH * 5, publish=self._broker.publish_event)
        self._metrics.events_published.inc(len(events))

        expired = await self._repo.forget_idempotency_keys(
            older_than_seconds=self._settings.idempotency_ttl_seconds, limit=_BATCH * 5
        )
        if expired:
            log.info("janitor.idempotency_keys_expired", extra={"count": expired})
        return SweepReport(
            len(requeued), len(failed), len(published), len(events), expired, len(parked)
        )

    async def run(self) -> None:
        """Sweep every ``janitor_interval_seconds`` until ``stop``."""
        log.info("janitor.started", extra={"interval_s": self._settings.janitor_interval_seconds})
        while not self._stop.is_set():
            try:
                await self.sweep()
            except DependencyUnavailable as exc:
                log.warning("janitor.sweep_failed", extra={"error": str(exc)})
            except Exception:
                log.exception("janitor.sweep_crashed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self._settings.janitor_interval_seconds)

    def stop(self) -> None:
        self._stop.set()
