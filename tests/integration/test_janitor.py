"""The janitor's sweeps on a real RabbitMQ and PostgreSQL."""

import asyncio
import uuid

import pytest

from services.janitor.janitor import Janitor
from shared.broker import AmqpBroker
from shared.errors import DependencyUnavailable
from shared.jobs import JobStatus
from shared.metrics import Metrics
from shared.repository import connect_repository
from shared.settings import Settings
from shared.store import FileStore
from tests.support.jobs import add_job

pytestmark = pytest.mark.integration


class _WatchingBroker(AmqpBroker):
    """The real broker, noting what the job row reads (from another
    connection) at the moment each job message is published."""

    seen: dict[uuid.UUID, JobStatus]
    repo: object

    async def publish_job(self, job_id, *, attempt=0, tier=None):
        self.seen[job_id] = (await self.repo.get(job_id)).status
        await super().publish_job(job_id, attempt=attempt, tier=tier)


async def test_a_requeued_job_reads_pending_to_whoever_receives_its_message(
    amqp_url, database_url, tmp_path
):
    settings = Settings(amqp_url=amqp_url, database_url=database_url, max_attempts=5)
    repo = await connect_repository(database_url, migrate=True)
    broker = await _WatchingBroker.connect(settings, app_id="videoq-test")
    broker.seen, broker.repo = {}, repo
    try:
        job_id = await add_job(repo)
        await repo.claim(job_id, owner="crashed-worker", lease_seconds=0.01)
        await asyncio.sleep(0.05)

        report = await Janitor(
            settings=settings,
            repo=repo,
            broker=broker,
            store=FileStore(tmp_path),
            metrics=Metrics(),
        ).sweep()

        assert report.requeued == 1
        # A worker claiming on this message must find the job pending; a
        # publish before the commit let it read "running" and drop it.
        assert broker.seen == {job_id: JobStatus.PENDING}
        job = await repo.get(job_id)
        assert job.status is JobStatus.PENDING
        assert job.published_at is not None
    finally:
        await broker.close()
        await repo.close()


async def test_a_failed_jobs_owed_dead_letter_copy_is_parked_once_and_cancelled_ones_never(
    amqp_url, database_url, tmp_path
):
    settings = Settings(amqp_url=amqp_url, database_url=database_url, outbox_grace_seconds=0.01)
    repo = await connect_repository(database_url, migrate=True)
    broker = await AmqpBroker.connect(settings, app_id="videoq-test")
    try:
        owed, cancelled = await add_job(repo), await add_job(repo)
        # The worker failed it but could not publish its copy (broker away).
        await repo.claim(owed, owner="w", lease_seconds=30)
        await repo.fail(owed, owner="w", error="Unable to read video file")
        await repo.cancel(cancelled)
        await asyncio.sleep(0.05)
        janitor = Janitor(
            settings=settings,
            repo=repo,
            broker=broker,
            store=FileStore(tmp_path),
            metrics=Metrics(),
        )

        assert (await janitor.sweep()).parked == 1
        assert (await janitor.sweep()).parked == 0  # once
        parked = await broker.dead_letters(limit=10)
        assert [(d.job_id, d.reason) for d in parked] == [(str(owed), "Unable to read video file")]
        assert (await repo.get(owed)).parked_at is not None
        assert (await repo.get(cancelled)).parked_at is None
    finally:
        await broker.close()
        await repo.close()


class _DatabaseAway:
    """The real repository, unreachable while ``away``."""

    def __init__(self, repo) -> None:
        self._repo, self.away = repo, False

    def __getattr__(self, name):
        if self.away:
            raise DependencyUnavailable("database", "ConnectionRefusedError")
        return getattr(self._repo, name)


async def test_after_a_database_outage_workers_get_one_lease_to_renew_theirs(
    amqp_url, database_url, tmp_path
):
    settings = Settings(amqp_url=amqp_url, database_url=database_url, lease_seconds=1.0)
    repo = await connect_repository(database_url, migrate=True)
    broker = await AmqpBroker.connect(settings, app_id="videoq-test")
    flaky = _DatabaseAway(repo)
    janitor = Janitor(
        settings=settings, repo=flaky, broker=broker, store=FileStore(tmp_path), metrics=Metrics()
    )
    try:
        renewed, abandoned = await add_job(repo), await add_job(repo)
        for job_id in (renewed, abandoned):
            await repo.claim(job_id, owner="worker", lease_seconds=0.2)
        # The database goes away for longer than the leases: nobody can renew.
        flaky.away = True
        with pytest.raises(DependencyUnavailable):
            await janitor.sweep()
        await asyncio.sleep(0.3)
        flaky.away = False

        # Back: both leases read expired, but neither job is taken from its worker...
        assert (await janitor.sweep()).requeued == 0
        # ...which renews one of them in time; the other worker is gone.
        assert await repo.heartbeat(renewed, owner="worker", lease_seconds=30, progress=0.5)
        await asyncio.sleep(1.1)
        assert (await janitor.sweep()).requeued == 1
        assert (await repo.get(renewed)).status is JobStatus.RUNNING
        assert (await repo.get(abandoned)).status is JobStatus.PENDING
    finally:
        await broker.close()
        await repo.close()
