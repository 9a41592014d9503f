"""The worker's consumer on a real RabbitMQ, PostgreSQL and S3: it keeps
consuming through short jobs, and hands a waiting delivery back when the
job in hand is long."""

import uuid

import pytest

from services.worker.main import build_analyzer
from services.worker.worker import Worker
from shared.backends import Backends, open_backends
from shared.broker import AmqpBroker
from shared.jobs import JobStatus, input_key
from shared.metrics import Metrics
from tests.support.waiting import async_wait_until

pytestmark = pytest.mark.integration


class _CountingBroker(AmqpBroker):
    cancels = 0

    async def stop_consuming(self) -> None:
        type(self).cancels += 1
        await super().stop_consuming()


async def _submit(backends: Backends, sample_mp4, *, pipeline: str, max_frames: int) -> uuid.UUID:
    """What the api does: store the input, create the row, publish."""
    job_id = uuid.uuid4()
    await backends.store.upload_file(input_key(job_id), sample_mp4, content_type="video/mp4")
    await backends.repo.create(
        job_id=job_id,
        input_path=input_key(job_id),
        pipeline=pipeline,
        options={"frame_stride": 1, "max_frames": max_frames},
        input_bytes=sample_mp4.stat().st_size,
    )
    await backends.broker.publish_job(job_id)
    return job_id


def _worker(settings, backends: Backends, name: str) -> Worker:
    return Worker(
        settings=settings,
        repo=backends.repo,
        broker=backends.broker,
        store=backends.store,
        analyzer=build_analyzer(settings),
        metrics=Metrics(),
        worker_id=name,
    )


async def test_a_busy_worker_hands_the_next_job_to_an_idle_one(settings, sample_mp4, monkeypatch):
    monkeypatch.setenv("VIDEOQ_TEST_SLOW_SECONDS", "0.5")
    settings = settings.model_copy(update={"worker_handoff_seconds": 0.5, "lease_seconds": 30})
    first = await open_backends(settings, app_id="w1")
    second = await open_backends(settings, app_id="w2")
    busy, idle = _worker(settings, first, "busy"), _worker(settings, second, "idle")
    try:
        await busy.start()
        # Two 3-second jobs; the busy worker receives both (it keeps consuming).
        ids = [await _submit(first, sample_mp4, pipeline="slow", max_frames=6) for _ in range(2)]
        await async_wait_until(
            lambda: _statuses(first, ids, JobStatus.RUNNING, 1), timeout=10, what="one running"
        )
        await idle.start()
        # Both run at once: the second was handed back and the idle worker took it.
        await async_wait_until(
            lambda: _statuses(first, ids, JobStatus.RUNNING, 2), timeout=10, what="both running"
        )
        await async_wait_until(
            lambda: _statuses(first, ids, JobStatus.COMPLETED, 2), timeout=30, what="both done"
        )
    finally:
        await busy.stop(grace_seconds=0)
        await idle.stop(grace_seconds=0)
        await first.close()
        await second.close()


async def test_a_worker_keeps_consuming_through_short_jobs(settings, sample_mp4):
    backends = await open_backends(settings, app_id="w")
    broker = await _CountingBroker.connect(settings, app_id="counting")
    worker = Worker(
        settings=settings,
        repo=backends.repo,
        broker=broker,
        store=backends.store,
        analyzer=build_analyzer(settings),
        metrics=Metrics(),
        worker_id="w",
    )
    try:
        await worker.start()
        ids = [await _submit(backends, sample_mp4, pipeline="noop", max_frames=2) for _ in range(8)]
        await async_wait_until(
            lambda: _statuses(backends, ids, JobStatus.COMPLETED, 8), timeout=30, what="all done"
        )
        # No basic.cancel / basic.consume round trips per job.
        assert _CountingBroker.cancels == 0
    finally:
        await worker.stop(grace_seconds=0)
        await broker.close()
        await backends.close()


async def _statuses(backends: Backends, ids, status: JobStatus, count: int) -> bool:
    jobs = [await backends.repo.get(i) for i in ids]
    return sum(j.status is status for j in jobs) == count
