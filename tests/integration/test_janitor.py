"""The janitor's sweeps on a real RabbitMQ and PostgreSQL."""

import asyncio
import uuid

import pytest

from services.janitor.janitor import Janitor
from shared.broker import AmqpBroker
from shared.jobs import JobStatus
from shared.metrics import Metrics
from shared.repository import connect_repository
from shared.settings import Settings

pytestmark = pytest.mark.integration


class _WatchingBroker(AmqpBroker):
    """The real broker, noting what the job row reads (from another
    connection) at the moment each job message is published."""

    seen: dict[uuid.UUID, JobStatus]
    repo: object

    async def publish_job(self, job_id, *, attempt=0, tier=None):
        self.seen[job_id] = (await self.repo.get(job_id)).status
        await super().publish_job(job_id, attempt=attempt, tier=tier)


async def test_a_requeued_job_reads_pending_to_whoever_receives_its_message(amqp_url, database_url):
    settings = Settings(amqp_url=amqp_url, database_url=database_url, max_attempts=5)
    repo = await connect_repository(database_url, migrate=True)
    broker = await _WatchingBroker.connect(settings, app_id="videoq-test")
    broker.seen, broker.repo = {}, repo
    try:
        job_id = uuid.uuid4()
        await repo.create(
            job_id=job_id,
            input_path=f"inputs/{job_id}.mp4",
            pipeline="basic",
            options={},
            input_bytes=1,
        )
        await repo.claim(job_id, owner="crashed-worker", lease_seconds=0.01)
        await asyncio.sleep(0.05)

        report = await Janitor(
            settings=settings, repo=repo, broker=broker, metrics=Metrics()
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
