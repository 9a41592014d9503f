"""The worker: take a message, claim its job, run the pipeline, store results.

Acknowledgement scheme: the delivery is acked as soon as the claim is
committed. From then on the job row holds the work, so a long job never
meets the broker's consumer_timeout, and a crashed worker's job waits in
``running`` until its lease expires and the janitor requeues it.

Because an early ack frees the prefetch slot, the broker delivers the next
message while a job runs; with ``prefetch = concurrency`` at most that many
wait inside the worker, unacked and unclaimed (another worker gets them if
this one dies). The worker keeps consuming: for short jobs the next delivery
is already in hand when a slot frees, with no consumer round trips per job.
A delivery that waits longer than ``worker_handoff_seconds`` (the jobs in
hand are long) is handed back, and the worker stops consuming until a slot
frees, so an idle worker elsewhere takes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import tempfile
import threading
import time
from pathlib import Path
from uuid import UUID

from shared import outbox
from shared.broker import Broker, Delivery
from shared.errors import DependencyUnavailable, InvalidPayload, JobInterrupted, JobTimedOut
from shared.jobs import CANCELLED, Job, input_key, results_key
from shared.metrics import Metrics
from shared.payload import parse_payload
from shared.pipeline import VideoFilePipelineService
from shared.pipeline.index import INDEX_SUFFIX
from shared.repository import JobRepository
from shared.retry import Action, decide
from shared.settings import Settings
from shared.store import ObjectStore
from shared.topology import tier_name

__all__ = ["Worker"]

log = logging.getLogger("videoq.worker")

#: How often a worker that cannot start consuming (broker away) tries again.
_RESUME_RETRY_SECONDS = 2.0
#: How long a delivery is held while its claim waits for the database, and
#: the backoff between tries. Well inside RabbitMQ's consumer_timeout (30 min),
#: which would otherwise close the channel over the unacked message.
_CLAIM_PATIENCE_SECONDS = 300.0
_CLAIM_RETRY_FIRST_SECONDS = 0.5
_CLAIM_RETRY_MAX_SECONDS = 15.0


class StopReason(enum.Enum):
    """Why a job in hand is asked to stop before it ends by itself."""

    TIMEOUT = "timeout"  # ran past job_timeout_seconds: fails or retries
    CANCELLED = "cancelled"  # its owner asked: fails as cancelled
    SHUTDOWN = "shutdown"  # the worker stops: released for another worker
    LEASE_LOST = "lease lost"  # the janitor gave it to another worker: let go


class _RunningJob:
    """Bookkeeping for one job in hand: why it should stop, its progress."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self.stop_reason: StopReason | None = None
        self.progress: float | None = None
        self._flag = threading.Event()

    def stop(self, reason: StopReason) -> None:
        if self.stop_reason is None:
            self.stop_reason = reason
        self._flag.set()

    def should_stop(self) -> bool:  # called from the pipeline's thread
        return self._flag.is_set()


class Worker:
    """Consumes the work queue until ``stop``."""

    def __init__(
        self,
        *,
        settings: Settings,
        repo: JobRepository,
        broker: Broker,
        store: ObjectStore,
        pipelines: VideoFilePipelineService,
        metrics: Metrics,
        worker_id: str,
    ) -> None:
        self._settings = settings
        self._repo = repo
        self._broker = broker
        self._store = store
        self._pipelines = pipelines
        self._metrics = metrics
        self.worker_id = worker_id
        self._slots = asyncio.Semaphore(settings.worker_concurrency)
        self._tiers = [tier_name(d) for d in settings.retry_delays]
        self._running: dict[UUID, _RunningJob] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._consuming = False
        self._consumer_lock = asyncio.Lock()
        self._retry_resume: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()

    # --- lifecycle ----------------------------------------------------------

    async def start(self) -> None:
        await self._resume()
        log.info("worker.started", extra={"worker_id": self.worker_id})

    async def _resume(self) -> None:
        """Consume again; while the broker is away, keep trying in the background."""
        async with self._consumer_lock:
            if self._consuming or self._stopping.is_set():
                return
            try:
                await self._broker.consume(
                    self._on_delivery, prefetch=self._settings.worker_concurrency
                )
            except DependencyUnavailable as exc:
                log.warning("worker.consume_failed", extra={"error": str(exc)})
                if self._retry_resume is None or self._retry_resume.done():
                    self._retry_resume = asyncio.create_task(self._resume_later())
                return
            self._consuming = True

    async def _resume_later(self) -> None:
        while not self._consuming and not self._stopping.is_set():
            await asyncio.sleep(_RESUME_RETRY_SECONDS)
            await self._resume()

    async def _pause(self) -> None:
        async with self._consumer_lock:
            if self._consuming:
                self._consuming = False
                await self._broker.stop_consuming()

    async def stop(self, *, grace_seconds: float) -> None:
        """Stop consuming; let jobs in hand finish within ``grace_seconds``,
        then interrupt them and release them (pending + republish)."""
        self._stopping.set()
        if self._retry_resume is not None:
            self._retry_resume.cancel()
        await self._pause()
        if self._running:
            # One line per job, each with its job_id field: a search for a job
            # finds that it was drained.
            for job_id in self._running:
                log.info(
                    "worker.draining",
                    extra={"job_id": str(job_id), "grace_seconds": grace_seconds},
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), grace_seconds)
        for running in self._running.values():
            running.stop(StopReason.SHUTDOWN)
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        log.info("worker.stopped", extra={"worker_id": self.worker_id})

    # --- one delivery ---------------------------------------------------------

    async def _on_delivery(self, delivery: Delivery) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            await self._handle(delivery)
        except Exception:
            # Never leave a message unsettled: it would hold a prefetch slot
            # of this channel until the connection closes.
            log.exception("message.handler_crashed", extra={"job_id": delivery.message_id})
            if not delivery.settled:
                await asyncio.sleep(1)
                with contextlib.suppress(Exception):
                    await delivery.hand_back()
        finally:
            if task is not None:
                self._tasks.discard(task)

    async def _handle(self, delivery: Delivery) -> None:
        try:
            job_id = parse_payload(delivery.body)
        except InvalidPayload as exc:
            await self._park(delivery, reason=f"invalid payload: {exc}", job_id=delivery.message_id)
            return
        if not await self._wait_for_slot():
            # Handed back: the jobs in hand are long, or the worker is stopping.
            await self._pause()
            await delivery.hand_back()
            if not self._stopping.is_set():
                log.info("message.handed_back", extra={"job_id": str(job_id)})
                if not self._slots.locked():  # a slot freed while pausing
                    await self._resume()
            return
        try:
            try:
                job = await self._claim(job_id)
            except DependencyUnavailable:
                # Stopping, or the database stayed away: back to the queue.
                await delivery.hand_back()
                return
            if job is None:
                await self._drop(delivery, job_id)
                return
            running = _RunningJob(job)
            self._running[job_id] = running
            self._idle.clear()
            try:
                # The claim holds the job from here: if the connection is gone
                # and the ack with it, the redelivered copy finds the job
                # taken and is dropped, while this one runs on.
                await delivery.ack()
                await self._run(running)
            finally:
                del self._running[job_id]
                if not self._running:
                    self._idle.set()
        finally:
            self._slots.release()
            # Also when the job ended in an error: a worker paused by a
            # hand-back would otherwise never consume again.
            if not self._consuming and not self._stopping.is_set():
                await self._resume()

    async def _claim(self, job_id: UUID) -> Job | None:
        """Claim the job, waiting out a database outage with the message in hand.

        Handing the message back at once would bounce it every few seconds,
        and on RabbitMQ 3.x every return counts toward the work queue's
        delivery limit: a half-minute outage would dead-letter healthy jobs
        (and the outbox would republish them only after
        ``republish_after_seconds``). A held message costs one prefetch slot.

        Raises:
            DependencyUnavailable: the worker is stopping, or the database
                stayed away for ``_CLAIM_PATIENCE_SECONDS``.
        """
        deadline = time.monotonic() + _CLAIM_PATIENCE_SECONDS
        delay = _CLAIM_RETRY_FIRST_SECONDS
        while True:
            try:
                return await self._repo.claim(
                    job_id, owner=self.worker_id, lease_seconds=self._settings.lease_seconds
                )
            except DependencyUnavailable as exc:
                if self._stopping.is_set() or time.monotonic() + delay > deadline:
                    log.warning(
                        "job.claim_failed", extra={"job_id": str(job_id), "error": str(exc)}
                    )
                    raise
                log.warning(
                    "job.claim_failed",
                    extra={"job_id": str(job_id), "error": str(exc), "retry_in": delay},
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)
            delay = min(delay * 2, _CLAIM_RETRY_MAX_SECONDS)

    async def _wait_for_slot(self) -> bool:
        """Take a job slot; ``False`` if the worker is stopping, or if none
        freed within ``worker_handoff_seconds``."""
        if self._stopping.is_set():
            return False
        try:
            await asyncio.wait_for(self._slots.acquire(), self._settings.worker_handoff_seconds)
        except TimeoutError:
            return False
        if self._stopping.is_set():
            self._slots.release()
            return False
        return True

    async def _park(self, delivery: Delivery, *, reason: str, job_id: str | None) -> None:
        log.error("message.parked", extra={"reason": reason, "job_id": job_id})
        await self._broker.park(delivery.body, reason=reason, job_id=job_id)
        self._metrics.jobs_parked.labels(reason=reason.split(":")[0]).inc()
        await delivery.ack()

    async def _drop(self, delivery: Delivery, job_id: UUID) -> None:
        current = await self._repo.get(job_id)
        if current is None:
            await self._park(delivery, reason="unknown job id", job_id=str(job_id))
            return
        # A duplicate: the job is done, or a live worker holds it.
        log.info(
            "message.duplicate_dropped",
            extra={"job_id": str(job_id), "status": current.status.value},
        )
        await delivery.ack()

    # --- one job ----------------------------------------------------------------

    async def _run(self, running: _RunningJob) -> None:
        job = running.job
        extra = {"job_id": str(job.job_id), "attempt": job.attempts, "pipeline": job.pipeline}
        log.info("job.claimed", extra=extra)
        self._metrics.jobs_in_flight.inc()
        # From when the job was last published (submit, retry, requeue) to this claim.
        queued_at = job.published_at or job.created_at
        self._metrics.queue_wait.labels(job.pipeline).observe(
            max(0.0, (job.updated_at - queued_at).total_seconds())
        )
        started = time.monotonic()
        heartbeat = asyncio.create_task(self._heartbeat(running))
        outcome = "completed"
        try:
            with tempfile.TemporaryDirectory(prefix="videoq-") as tmp:
                output, size = await self._process(running, Path(tmp))
            done = await self._repo.complete(
                job.job_id, owner=self.worker_id, output_path=output, output_bytes=size
            )
            if done is None:
                outcome = "lost"
                log.warning("job.lease_lost", extra=extra)
            else:
                self._metrics.jobs_completed.labels(job.pipeline).inc()
                log.info(
                    "job.completed",
                    extra={**extra, "seconds": round(time.monotonic() - started, 3)},
                )
        except Exception as exc:  # every error is classified in shared.retry
            try:
                if isinstance(exc, JobInterrupted):  # cancelled, shutdown, lease lost
                    outcome = await self._interrupted(running)
                else:
                    outcome = await self._failed(job, exc)
            except DependencyUnavailable as lost:
                # Could not record the outcome: the lease will expire and the
                # janitor requeues the job.
                log.error(
                    "job.outcome_unrecorded",
                    extra={"job_id": str(job.job_id), "error": str(exc), "cause": str(lost)},
                )
                outcome = "unrecorded"
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
            self._metrics.jobs_in_flight.dec()
            self._metrics.job_duration.labels(job.pipeline, outcome).observe(
                time.monotonic() - started
            )

    async def _process(self, running: _RunningJob, tmp: Path) -> tuple[str, int]:
        job = running.job
        source = tmp / "input.mp4"
        path = job.input_path or input_key(job.job_id)
        # A source= input is a URI in the client's bucket, read where it is.
        reader, key = self._store.locate(path) if "://" in path else (self._store, path)
        await reader.download_file(key, source)
        target = tmp / "results.json"

        def on_progress(fraction: float) -> None:
            running.progress = max(0.0, min(1.0, fraction))

        work = asyncio.create_task(
            asyncio.to_thread(
                self._pipelines.analyze,
                source,
                target,
                job_id=job.job_id,
                pipeline=job.pipeline,
                frame_stride=job.frame_stride,
                max_frames=job.max_frames,
                sampling=job.sampling,
                on_progress=on_progress,
                should_stop=running.should_stop,
            )
        )
        try:
            summary = await asyncio.wait_for(
                asyncio.shield(work), self._settings.job_timeout_seconds
            )
        except TimeoutError:
            running.stop(StopReason.TIMEOUT)
            with contextlib.suppress(Exception):
                await work  # the thread notices the flag at its next frame
            raise JobTimedOut.after(self._settings.job_timeout_seconds) from None
        except asyncio.CancelledError:
            # Never leave the thread running on without its job: its files
            # are in ``tmp``, which goes away with this frame.
            running.stop(StopReason.SHUTDOWN)
            with contextlib.suppress(Exception):
                await work
            raise
        frames = getattr(summary, "frames_sampled", 0)
        self._metrics.frames_processed.labels(job.pipeline).inc(frames)
        key = results_key(job.job_id)
        size = await self._store.upload_file(key, target, content_type="application/json")
        index = target.with_name(target.name + INDEX_SUFFIX)
        if size >= self._settings.results_index_min_bytes and index.is_file():
            # Before the job is completed, so a completed job's index is there.
            await self._store.upload_file(
                key + INDEX_SUFFIX, index, content_type="application/octet-stream"
            )
        return key, size

    async def _heartbeat(self, running: _RunningJob) -> None:
        """Keep the lease alive and write coarse progress; stop the job if the
        lease is lost (the janitor gave it to someone else)."""
        interval = min(self._settings.progress_interval_seconds, self._settings.lease_seconds / 3)
        job_id = running.job.job_id
        while True:
            await asyncio.sleep(interval)
            try:
                current = await self._repo.heartbeat(
                    job_id,
                    owner=self.worker_id,
                    lease_seconds=self._settings.lease_seconds,
                    progress=running.progress,
                )
            except DependencyUnavailable as exc:
                log.warning(
                    "job.heartbeat_failed", extra={"job_id": str(job_id), "error": str(exc)}
                )
                continue
            except Exception:
                # Keep beating: a dead heartbeat would let the lease lapse
                # under a job that is still running.
                log.exception("job.heartbeat_crashed", extra={"job_id": str(job_id)})
                continue
            if current is None:
                log.warning("job.lease_lost", extra={"job_id": str(job_id)})
                running.stop(StopReason.LEASE_LOST)
                return
            if current.cancel_requested and running.stop_reason is None:
                log.info("job.cancel_requested", extra={"job_id": str(job_id)})
                running.stop(StopReason.CANCELLED)
            # Beating on after a cancel keeps the lease until the job stops:
            # a download or upload in progress does not look at the flag.

    async def _interrupted(self, running: _RunningJob) -> str:
        job = running.job
        reason = running.stop_reason
        extra = {"job_id": str(job.job_id), "reason": reason.value if reason else None}
        if reason is StopReason.TIMEOUT:
            return await self._failed(job, JobTimedOut.after(self._settings.job_timeout_seconds))
        if reason is StopReason.CANCELLED:
            if await self._repo.fail(job.job_id, owner=self.worker_id, error=CANCELLED):
                self._metrics.jobs_cancelled.labels(job.pipeline).inc()
                log.info("job.cancelled", extra=extra)
            return "cancelled"
        if reason is not StopReason.SHUTDOWN:
            log.warning("job.abandoned", extra=extra)  # someone else owns it now
            return "lost"
        released = await self._repo.release(job.job_id, owner=self.worker_id)
        if released is not None:
            await outbox.publish_and_record(
                self._broker, self._repo, job.job_id, attempt=released.attempts
            )
            log.info("job.released", extra=extra)
        return "released"

    async def _failed(self, job: Job, error: BaseException) -> str:
        decision = decide(
            error,
            attempts=job.attempts,
            max_attempts=self._settings.max_attempts,
            tiers=len(self._tiers),
        )
        extra = {"job_id": str(job.job_id), "attempt": job.attempts, "error": decision.message}
        if decision.action is Action.RETRY:
            assert decision.tier is not None
            tier = self._tiers[decision.tier]
            if await self._repo.retry(job.job_id, owner=self.worker_id, error=decision.message):
                self._metrics.jobs_retried.labels(job.pipeline, tier).inc()
                log.warning("job.retry_scheduled", extra={**extra, "tier": tier})
                await outbox.publish_and_record(
                    self._broker, self._repo, job.job_id, attempt=job.attempts, tier=tier
                )
            return "retried"
        if await self._repo.fail(job.job_id, owner=self.worker_id, error=decision.message):
            self._metrics.jobs_failed.labels(job.pipeline).inc()
            log.error("job.failed", extra=extra)
            # If the broker is away, the row says failed and the janitor parks its copy.
            if await outbox.park_and_record(self._broker, self._repo, job, reason=decision.message):
                self._metrics.jobs_parked.labels(reason="failed").inc()
        return "failed"
