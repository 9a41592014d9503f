"""The outbox on a real PostgreSQL: a send that meets an outage is deferred,
and the janitor's sweeps send what the rows still owe."""

import asyncio
import logging

import pytest

from shared import outbox
from shared.broker import MemoryBroker
from shared.errors import DependencyUnavailable
from shared.payload import build_payload
from shared.repository import connect_repository
from shared.settings import Settings
from tests.support.jobs import add_job

pytestmark = pytest.mark.integration


class _BrokerAway(MemoryBroker):
    """The in-process broker, refusing every publish and park while ``away``."""

    away = True

    async def publish_job(self, job_id, *, attempt=0, tier=None):
        if self.away:
            raise DependencyUnavailable("broker", "AMQPConnectionError")
        await super().publish_job(job_id, attempt=attempt, tier=tier)

    async def park(self, body, *, reason, job_id=None, attempt=None):
        if self.away:
            raise DependencyUnavailable("broker", "AMQPConnectionError")
        await super().park(body, reason=reason, job_id=job_id, attempt=attempt)


class _RecordsAway:
    """The real repository, but the database is gone when a send is recorded."""

    def __init__(self, repo) -> None:
        self._repo = repo

    def __getattr__(self, name):
        return getattr(self._repo, name)

    async def mark_published(self, job_id):
        raise DependencyUnavailable("database", "ConnectionResetError")

    async def mark_parked(self, job_id):
        raise DependencyUnavailable("database", "ConnectionResetError")


@pytest.fixture
async def repo(database_url):
    repository = await connect_repository(database_url, migrate=True)
    yield repository
    await repository.close()


def _events(caplog) -> list[tuple[str, dict]]:
    return [
        (r.getMessage(), {k: getattr(r, k, None) for k in ("job_id", "record")})
        for r in caplog.records
        if r.name == "videoq.outbox"
    ]


async def test_a_publish_the_broker_did_not_confirm_is_left_to_the_outbox_sweep(repo, caplog):
    caplog.set_level(logging.WARNING)
    broker = _BrokerAway(Settings())
    job_id = await add_job(repo)

    await outbox.publish_and_record(broker, repo, job_id, attempt=0)

    assert _events(caplog) == [("job.publish_deferred", {"job_id": str(job_id), "record": None})]
    assert (await repo.get(job_id)).published_at is None
    broker.away = False
    await asyncio.sleep(0.05)
    owed = await outbox.publish_owed(
        broker, repo, grace_seconds=0.01, republish_after_seconds=3600, limit=10
    )
    assert [job.job_id for job in owed] == [job_id]
    assert broker.published == [("work", build_payload(job_id))]
    assert (await repo.get(job_id)).published_at is not None


async def test_a_copy_the_broker_did_not_take_is_parked_by_the_sweep(repo, caplog):
    caplog.set_level(logging.WARNING)
    broker = _BrokerAway(Settings())
    job_id = await add_job(repo)
    await repo.claim(job_id, owner="w", lease_seconds=30)
    job = await repo.fail(job_id, owner="w", error="Unable to read video file")

    assert not await outbox.park_and_record(broker, repo, job, reason=job.error_message)

    assert _events(caplog) == [("job.park_deferred", {"job_id": str(job_id), "record": None})]
    assert (await repo.get(job_id)).parked_at is None
    broker.away = False
    await asyncio.sleep(0.05)
    assert [
        j.job_id for j in await outbox.park_owed(broker, repo, grace_seconds=0.01, limit=10)
    ] == [job_id]
    letters = await broker.dead_letters(limit=10)
    assert [(d.job_id, d.reason, d.attempt) for d in letters] == [
        (str(job_id), "Unable to read video file", 1)
    ]
    assert (await repo.get(job_id)).parked_at is not None


async def test_a_send_the_database_could_not_record_is_logged_and_owed_again(repo, caplog):
    caplog.set_level(logging.WARNING)
    broker = MemoryBroker(Settings())
    pending, failed = await add_job(repo), await add_job(repo)
    await repo.claim(failed, owner="w", lease_seconds=30)
    job = await repo.fail(failed, owner="w", error="Pipeline not found")

    await outbox.publish_and_record(broker, _RecordsAway(repo), pending, attempt=0)
    assert await outbox.park_and_record(
        broker, _RecordsAway(repo), job, reason="Pipeline not found"
    )

    assert _events(caplog) == [
        ("job.record_deferred", {"job_id": str(pending), "record": "published"}),
        ("job.record_deferred", {"job_id": str(failed), "record": "parked"}),
    ]
    # Both went out, but their rows still owe them: the sweeps send them again.
    assert len(broker.published) == 2
    await asyncio.sleep(0.05)
    assert (
        len(
            await outbox.publish_owed(
                broker, repo, grace_seconds=0.01, republish_after_seconds=3600, limit=10
            )
        )
        == 1
    )
    assert len(await outbox.park_owed(broker, repo, grace_seconds=0.01, limit=10)) == 1
