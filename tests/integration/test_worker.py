"""The worker's consumer on a real RabbitMQ, PostgreSQL and S3: it keeps
consuming through short jobs, hands a waiting delivery back when the job in
hand is long, and holds a delivery whose claim waits for the database."""

import json
import time

import aio_pika
import pytest

from services.worker import worker as worker_module
from services.worker.main import build_pipelines
from services.worker.worker import Worker
from shared.backends import Backends, open_backends
from shared.broker import AmqpBroker
from shared.errors import DependencyUnavailable
from shared.jobs import JobStatus, results_key
from shared.metrics import Metrics
from tests.support.submit import submit_video
from tests.support.waiting import async_wait_until

pytestmark = pytest.mark.integration


class _CountingBroker(AmqpBroker):
    cancels = 0

    async def stop_consuming(self) -> None:
        type(self).cancels += 1
        await super().stop_consuming()


class _RecordingBroker(AmqpBroker):
    """The real broker, noting whether each delivery it hands over is a
    redelivery, and the broker's count of its earlier returns."""

    redelivered: list[bool]
    returns: list[int]

    async def consume(self, handler, *, prefetch):
        async def recording(delivery):
            self.redelivered.append(delivery.redelivered)
            self.returns.append(int(delivery.headers.get("x-delivery-count") or 0))
            await handler(delivery)

        await super().consume(recording, prefetch=prefetch)


class _DatabaseAwayForClaims:
    """The real repository, but its first ``failures`` claims find the database away."""

    def __init__(self, repo, failures: int) -> None:
        self._repo, self.failures, self.tries = repo, failures, 0

    def __getattr__(self, name):
        return getattr(self._repo, name)

    async def claim(self, job_id, **kwargs):
        self.tries += 1
        if self.tries <= self.failures:
            raise DependencyUnavailable("database", "ConnectionRefusedError")
        return await self._repo.claim(job_id, **kwargs)


def _worker(settings, backends: Backends, name: str, *, repo=None, broker=None) -> Worker:
    """A worker on ``backends``, or on a ``repo`` / ``broker`` a test wraps."""
    return Worker(
        settings=settings,
        repo=repo if repo is not None else backends.repo,
        broker=broker if broker is not None else backends.broker,
        store=backends.store,
        pipelines=build_pipelines(settings),
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
        ids = [
            await submit_video(first, settings, sample_mp4, pipeline="slow", max_frames=6)
            for _ in range(2)
        ]
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
    worker = _worker(settings, backends, "w", broker=broker)
    try:
        await worker.start()
        ids = [
            await submit_video(backends, settings, sample_mp4, pipeline="noop", max_frames=2)
            for _ in range(8)
        ]
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


async def test_a_worker_waits_out_a_database_outage_with_the_message_in_hand(settings, sample_mp4):
    backends = await open_backends(settings, app_id="w")
    broker = await _RecordingBroker.connect(settings, app_id="recording")
    broker.redelivered, broker.returns = [], []
    repo = _DatabaseAwayForClaims(backends.repo, failures=3)  # 0.5 + 1 + 2 s of outage
    worker = _worker(settings, backends, "w", repo=repo, broker=broker)
    try:
        await worker.start()
        job_id = await submit_video(backends, settings, sample_mp4, pipeline="noop", max_frames=2)
        await async_wait_until(
            lambda: _statuses(backends, [job_id], JobStatus.COMPLETED, 1),
            timeout=20,
            what="the job done",
        )
        assert repo.tries == 4
        # Delivered once: handing it back on every failed claim would have
        # counted toward the queue's delivery limit each time.
        assert broker.redelivered == [False]
    finally:
        await worker.stop(grace_seconds=0)
        await broker.close()
        await backends.close()


async def test_a_stopping_worker_hands_back_at_once_a_message_waiting_for_the_database(
    settings, sample_mp4
):
    backends = await open_backends(settings, app_id="w")
    repo = _DatabaseAwayForClaims(backends.repo, failures=1_000)
    stuck = _worker(settings, backends, "stuck", repo=repo)
    other = _worker(settings, backends, "other")
    try:
        await stuck.start()
        job_id = await submit_video(backends, settings, sample_mp4, pipeline="noop", max_frames=2)

        async def claims_tried() -> bool:
            return repo.tries >= 2

        await async_wait_until(claims_tried, timeout=10, what="claims tried")
        started = time.monotonic()
        await stuck.stop(grace_seconds=30)
        assert time.monotonic() - started < 2  # not held through the backoff
        await other.start()  # the message went back to the queue: nothing lost
        await async_wait_until(
            lambda: _statuses(backends, [job_id], JobStatus.COMPLETED, 1),
            timeout=20,
            what="the job done by the other worker",
        )
    finally:
        await stuck.stop(grace_seconds=0)
        await other.stop(grace_seconds=0)
        await backends.close()


async def test_a_message_handed_back_often_is_published_afresh_before_its_delivery_limit(
    settings, sample_mp4, monkeypatch
):
    # No patience: a claim that finds the database away hands the message back.
    monkeypatch.setattr(worker_module, "_CLAIM_PATIENCE_SECONDS", 0.0)
    backends = await open_backends(settings, app_id="w")
    broker = await _RecordingBroker.connect(settings, app_id="recording")
    broker.redelivered, broker.returns = [], []
    repo = _DatabaseAwayForClaims(backends.repo, failures=1)
    worker = _worker(settings, backends, "w", repo=repo, broker=broker)
    try:
        job_id = await submit_video(backends, settings, sample_mp4, pipeline="noop", max_frames=2)
        # Other workers handed it back 4 times already (limit 10).
        connection = await aio_pika.connect(settings.amqp_url.get_secret_value())
        async with connection:
            queue = await (await connection.channel()).get_queue(settings.queue_process)
            for _ in range(4):
                message = await queue.get(timeout=5)
                await message.nack(requeue=True)
        await worker.start()
        await async_wait_until(
            lambda: _statuses(backends, [job_id], JobStatus.COMPLETED, 1),
            timeout=20,
            what="the job done",
        )
        # Its fifth return would be a requeue (count 5 of 10); it was
        # published afresh, and the new message started counting at 0.
        assert broker.returns == [4, 0]
    finally:
        await worker.stop(grace_seconds=0)
        await broker.close()
        await backends.close()


class _OutcomeCannotBeRecorded:
    """The real repository, but recording the job's outcome hits a bug."""

    def __init__(self, repo) -> None:
        self._repo = repo

    def __getattr__(self, name):
        return getattr(self._repo, name)

    async def complete(self, job_id, **kwargs):
        raise RuntimeError("a bug while completing")

    async def retry(self, job_id, **kwargs):
        raise RuntimeError("a bug while retrying")


async def test_a_paused_worker_consumes_again_after_a_job_that_ended_in_a_bug(
    settings, sample_mp4, monkeypatch
):
    monkeypatch.setenv("VIDEOQ_TEST_SLOW_SECONDS", "0.3")
    settings = settings.model_copy(update={"worker_handoff_seconds": 0.3, "lease_seconds": 30})
    backends = await open_backends(settings, app_id="w")
    worker = _worker(settings, backends, "w", repo=_OutcomeCannotBeRecorded(backends.repo))
    try:
        long = await submit_video(backends, settings, sample_mp4, pipeline="slow", max_frames=3)
        short = await submit_video(backends, settings, sample_mp4, pipeline="noop", max_frames=2)
        await worker.start()
        # The short job waits behind the long one, is handed back, and the
        # worker pauses; the long one's outcome then fails with a bug. The
        # worker must consume again, or nothing ever takes the short job.
        await async_wait_until(
            lambda: _statuses(backends, [short], JobStatus.RUNNING, 1),
            timeout=15,
            what="the short job taken again",
        )
        assert (await backends.repo.get(long)).status is JobStatus.RUNNING  # lease expires later
    finally:
        await worker.stop(grace_seconds=0)
        await backends.close()


@pytest.mark.parametrize("threshold", [0, 10**9])
async def test_a_large_enough_document_gets_its_index_uploaded_beside_it(
    settings, sample_mp4, threshold
):
    settings = settings.model_copy(update={"results_index_min_bytes": threshold})
    backends = await open_backends(settings, app_id="w")
    worker = _worker(settings, backends, "w")
    try:
        await worker.start()
        job_id = await submit_video(backends, settings, sample_mp4, pipeline="basic")
        await async_wait_until(
            lambda: _statuses(backends, [job_id], JobStatus.COMPLETED, 1), timeout=30, what="done"
        )
        job = await backends.repo.get(job_id)
        assert job.output_path is not None
        index = await backends.store.exists(job.output_path + ".index")
        assert index is (threshold == 0)
    finally:
        await worker.stop(grace_seconds=0)
        await backends.close()


async def test_a_job_submitted_with_sparse_sampling_is_analysed_that_way(
    settings, sample_mp4, tmp_path
):
    backends = await open_backends(settings, app_id="w")
    worker = _worker(settings, backends, "w")
    try:
        await worker.start()
        job_id = await submit_video(
            backends, settings, sample_mp4, pipeline="basic", sampling="keyframes"
        )
        await async_wait_until(
            lambda: _statuses(backends, [job_id], JobStatus.COMPLETED, 1), timeout=30, what="done"
        )
        job = await backends.repo.get(job_id)
        assert job.sampling == "keyframes"
        target = tmp_path / "results.json"
        await backends.store.download_file(results_key(job_id), target)
        document = json.loads(target.read_text())
        assert document["summary"]["sampling"] == "keyframes"
        # The sample clip's only keyframe is its first frame (x264's default GOP).
        assert [e["frame_index"] for e in document["results"]] == [0]
        assert document["summary"]["frames_decoded"] == 1
    finally:
        await worker.stop(grace_seconds=0)
        await backends.close()
