"""The janitor: the recovery path for work that a crash or an outage stranded.

Each sweep, safe with several replicas (rows are taken with
``FOR UPDATE SKIP LOCKED``, so two janitors never handle the same job; the
sends are ``shared.outbox``'s):

- running jobs whose lease expired go back to pending and are published,
  or fail (with a copy parked in the dead-letter queue) when their attempts
  are used up. After a database outage, no lease is expired for one lease
  period: no worker could renew its lease meanwhile, and expiring them all
  would restart every running job (a managed PostgreSQL failover takes
  longer than a lease);
- pending jobs never recorded as published, or published so long ago that
  the message is probably lost, are published again;
- failed jobs whose copy was never recorded as parked are parked;
- status events go out in order, and old ``Idempotency-Key``s are forgotten;
- retention and erasure (``shared.retention``): erasures owed are done,
  inputs and results past retention deleted, jobs past retention erased.
- direct uploads past their expiry that no job took over are aborted, their
  parts (or completed object) deleted, then their rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field

from shared import outbox, retention
from shared.broker import Broker
from shared.errors import DependencyUnavailable
from shared.metrics import Metrics
from shared.repository import ExpiredLeases, JanitorRepository
from shared.settings import Settings
from shared.store import ObjectStore
from shared.uploads import discard

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
    retention: retention.RetentionReport = field(default_factory=retention.RetentionReport)
    uploads_expired: int = 0


class Janitor:
    def __init__(
        self,
        *,
        settings: Settings,
        repo: JanitorRepository,
        broker: Broker,
        store: ObjectStore,
        metrics: Metrics,
    ) -> None:
        self._settings = settings
        self._repo = repo
        self._broker = broker
        self._store = store
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
        if self._database_was_away:
            # Back from an outage: give the workers one lease to renew theirs.
            self._database_was_away = False
            self._expire_from = time.monotonic() + self._settings.lease_seconds
            log.info("janitor.lease_grace", extra={"seconds": self._settings.lease_seconds})
        expired = ExpiredLeases(requeued=[], failed=[])
        if time.monotonic() >= self._expire_from:
            expired = await outbox.expire_leases(
                self._broker, self._repo, max_attempts=self._settings.max_attempts, limit=_BATCH
            )
        for job in expired.requeued:
            log.warning(
                "janitor.requeued", extra={"job_id": str(job.job_id), "attempt": job.attempts}
            )
        for job in expired.failed:
            log.error("janitor.failed", extra={"job_id": str(job.job_id), "attempt": job.attempts})
            self._metrics.jobs_failed.labels(job.pipeline).inc()
        self._metrics.janitor_requeued.inc(len(expired.requeued))
        self._metrics.janitor_expired_failed.inc(len(expired.failed))
        self._metrics.jobs_parked.labels(reason="lease_expired").inc(len(expired.failed))

        published = await outbox.publish_owed(
            self._broker,
            self._repo,
            grace_seconds=self._settings.outbox_grace_seconds,
            republish_after_seconds=self._settings.republish_after_seconds,
            limit=_BATCH,
        )
        for job in published:
            log.info("janitor.published", extra={"job_id": str(job.job_id)})
        self._metrics.outbox_published.inc(len(published))

        parked = await outbox.park_owed(
            self._broker,
            self._repo,
            grace_seconds=self._settings.outbox_grace_seconds,
            limit=_BATCH,
        )
        for job in parked:
            log.warning("janitor.parked", extra={"job_id": str(job.job_id)})
        self._metrics.jobs_parked.labels(reason="failed").inc(len(parked))

        events = await outbox.publish_owed_events(self._broker, self._repo, limit=_BATCH * 5)
        self._metrics.events_published.inc(len(events))

        forgotten = await self._repo.forget_idempotency_keys(
            older_than_seconds=self._settings.idempotency_ttl_seconds, limit=_BATCH * 5
        )
        if forgotten:
            log.info("janitor.idempotency_keys_expired", extra={"count": forgotten})
        retained = await retention.sweep(
            self._repo, self._store, settings=self._settings, metrics=self._metrics, limit=_BATCH
        )
        uploads_expired = await self._expire_uploads()
        return SweepReport(
            requeued=len(expired.requeued),
            failed=len(expired.failed),
            published=len(published),
            events=len(events),
            keys_expired=forgotten,
            parked=len(parked),
            retention=retained,
            uploads_expired=uploads_expired,
        )

    async def _expire_uploads(self) -> int:
        """Abort up to one batch of expired uploads; a store that is away
        leaves their rows for a later sweep."""
        async with self._repo.lock_expired_uploads(limit=_BATCH) as locked:
            for upload in locked.rows:
                await discard(self._store, upload)
                log.info(
                    "janitor.upload_expired",
                    extra={"upload_id": str(upload.upload_id), "client": upload.client_id},
                )
            await locked.record(locked.rows)
        self._metrics.uploads_expired.inc(len(locked.rows))
        return len(locked.rows)

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
