"""Retention and erasure: what the service deletes, and in which order.

A job's objects are its input (when the service owns it: never a
``source=`` input), every object under its results prefix (the document and
any pages beside it) and its ``output_path``. Objects go first and the rows
last, so a deletion cut short (store or database away) leaves the row that
says what is still owed, and the next sweep finishes it. Only failed or
completed jobs are touched; nothing here reads another job's keys.

- **erase**: the objects, then the job's rows in one transaction
  (``JobRepository.erase``). The api erases a finished job at once; one
  still running is cancelled and the janitor erases it when it stops.
- **retention**: the janitor deletes inputs and results past their
  retention (the row stays, stamped ``input_deleted_at`` /
  ``results_expired_at``) and erases jobs past ``job_retention_seconds``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from shared.jobs import TERMINAL, Job, input_key, results_prefix
from shared.metrics import Metrics
from shared.repository import JanitorRepository, JobRepository, Retained
from shared.settings import Settings
from shared.store import ObjectStore

__all__ = ["RetentionReport", "erase_job", "sweep"]

log = logging.getLogger("videoq.retention")


@dataclass(frozen=True)
class RetentionReport:
    inputs: int = 0
    results: int = 0
    erased: int = 0
    cancelled: int = 0


async def _delete_input(store: ObjectStore, job: Job) -> int:
    if not job.input_owned:
        return 0  # the client's own object (source=)
    deleted = await store.delete_prefix(f"inputs/{job.job_id}")
    if job.input_path and job.input_path != input_key(job.job_id) and "://" not in job.input_path:
        await store.delete(job.input_path)
        deleted += 1
    return deleted


async def _delete_results(store: ObjectStore, job: Job) -> int:
    deleted = await store.delete_prefix(results_prefix(job.job_id))
    if job.output_path and not job.output_path.startswith(results_prefix(job.job_id)):
        await store.delete(job.output_path)
        deleted += 1
    return deleted


async def erase_job(repo: JobRepository, store: ObjectStore, job: Job) -> bool:
    """Delete a failed or completed job's objects, then its rows. ``False``
    (nothing deleted) when the job is not finished, or gone already.

    Raises ``DependencyUnavailable`` when the store or the database is away:
    then whatever is left stays owed (the job keeps ``erase_requested``)."""
    if job.status not in TERMINAL:
        return False
    await _delete_input(store, job)
    await _delete_results(store, job)
    return await repo.erase(job.job_id)


async def sweep(
    repo: JanitorRepository,
    store: ObjectStore,
    *,
    settings: Settings,
    metrics: Metrics,
    limit: int,
) -> RetentionReport:
    """One bounded pass: at most ``limit`` jobs per kind (cancel owed erasures,
    erase, delete inputs, delete results); the next pass takes the rest."""
    cancelled = 0
    for job in await repo.unstopped_erasures(limit=limit):
        # Released or retried while its erasure waited: stop it for good.
        if await repo.cancel(job.job_id) is not None:
            cancelled += 1
    erased = 0
    for job in await repo.due_for_erasure(
        job_retention_seconds=settings.job_retention_seconds, limit=limit
    ):
        if await erase_job(repo, store, job):
            erased += 1
    _count(metrics, "job", erased)
    counts: dict[Retained, int] = {"input": 0, "results": 0}
    kinds: tuple[tuple[Retained, float], ...] = (
        ("input", settings.input_retention_seconds),
        ("results", settings.results_retention_seconds),
    )
    for what, seconds in kinds:
        if not seconds:
            continue
        due = await repo.due_for_retention(what, older_than_seconds=seconds, limit=limit)
        for job in due:
            await (_delete_input if what == "input" else _delete_results)(store, job)
        await repo.record_retained(what, [job.job_id for job in due])
        counts[what] = len(due)
        _count(metrics, what, len(due))
    return RetentionReport(
        inputs=counts["input"], results=counts["results"], erased=erased, cancelled=cancelled
    )


def _count(metrics: Metrics, kind: str, count: int) -> None:
    if count:
        metrics.retention_deleted.labels(kind).inc(count)
        log.info("retention.deleted", extra={"kind": kind, "count": count})
