"""The job repository on a real PostgreSQL."""

import asyncio
import uuid

import asyncpg
import pytest

from shared.errors import DependencyUnavailable
from shared.jobs import JobStatus
from shared.repository import PostgresJobRepository, connect_repository, load_migrations

# PostgreSQL or S3 only: no RabbitMQ to vary, so not again in the RabbitMQ 4 lane.
pytestmark = [pytest.mark.integration, pytest.mark.single_broker]


@pytest.fixture
async def repo(database_url):
    repository = await connect_repository(database_url, migrate=True, max_size=20)
    yield repository
    await repository.close()


async def new_job(repo: PostgresJobRepository):
    job_id = uuid.uuid4()
    return await repo.create(
        job_id=job_id,
        input_path=f"inputs/{job_id}.mp4",
        pipeline="basic",
        options={"frame_stride": 2, "max_frames": None},
        input_bytes=1234,
    )


async def test_a_new_job_is_pending_with_the_specs_columns(repo, database_url):
    job = await new_job(repo)
    assert job.status is JobStatus.PENDING
    assert (job.attempts, job.progress, job.output_path, job.error_message) == (0, 0.0, None, None)
    assert job.frame_stride == 2
    conn = await asyncpg.connect(database_url)
    columns = [
        r["column_name"]
        for r in await conn.fetch(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'jobs' ORDER BY ordinal_position"
        )
    ]
    await conn.close()
    assert columns[:7] == [
        "job_id",
        "status",
        "created_at",
        "updated_at",
        "input_path",
        "output_path",
        "error_message",
    ]


async def test_migrations_are_applied_once_even_when_services_start_together(database_url):
    repos = await asyncio.gather(
        *(connect_repository(database_url, migrate=True) for _ in range(4))
    )
    for r in repos:
        await r.close()
    conn = await asyncpg.connect(database_url)
    versions = [r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")]
    await conn.close()
    assert versions == [m.version for m in load_migrations()]


async def test_the_database_refuses_a_status_outside_the_four(repo, database_url):
    job = await new_job(repo)
    conn = await asyncpg.connect(database_url)
    with pytest.raises(asyncpg.exceptions.InvalidTextRepresentationError):
        await conn.execute("UPDATE jobs SET status = 'paused' WHERE job_id = $1", job.job_id)
    with pytest.raises(asyncpg.exceptions.CheckViolationError):
        # running without a lease is impossible too
        await conn.execute("UPDATE jobs SET status = 'running' WHERE job_id = $1", job.job_id)
    await conn.close()


async def test_of_many_concurrent_claims_exactly_one_wins(repo):
    job = await new_job(repo)
    results = await asyncio.gather(
        *(repo.claim(job.job_id, owner=f"w{i}", lease_seconds=30) for i in range(12))
    )
    winners = [r for r in results if r is not None]
    assert len(winners) == 1
    assert winners[0].status is JobStatus.RUNNING and winners[0].attempts == 1


async def test_only_the_lease_owner_completes(repo):
    job = await new_job(repo)
    await repo.claim(job.job_id, owner="a", lease_seconds=30)
    assert await repo.complete(job.job_id, owner="b", output_path="results/x.json") is None
    done = await repo.complete(
        job.job_id, owner="a", output_path="results/x.json", output_bytes=2048
    )
    assert done is not None and done.status is JobStatus.COMPLETED and done.progress == 1.0
    assert (await repo.get(job.job_id)).output_bytes == 2048
    # completed is final: no second completion, no claim
    assert await repo.complete(job.job_id, owner="a", output_path="results/x.json") is None
    assert await repo.claim(job.job_id, owner="c", lease_seconds=30) is None


async def test_retry_fail_and_replay(repo):
    job = await new_job(repo)
    await repo.claim(job.job_id, owner="a", lease_seconds=30)
    retried = await repo.retry(job.job_id, owner="a", error="store down")
    assert retried.status is JobStatus.PENDING and retried.published_at is None
    assert retried.error_message == "store down"
    again = await repo.claim(job.job_id, owner="b", lease_seconds=30)
    assert again.attempts == 2
    failed = await repo.fail(job.job_id, owner="b", error="Unable to read video file")
    assert failed.status is JobStatus.FAILED
    replayed = await repo.replay(job.job_id)
    assert replayed.status is JobStatus.PENDING and replayed.attempts == 0
    assert await repo.replay(job.job_id) is None  # only failed jobs replay


async def test_release_hands_back_without_counting_the_attempt(repo):
    job = await new_job(repo)
    await repo.claim(job.job_id, owner="a", lease_seconds=30)
    released = await repo.release(job.job_id, owner="a")
    assert released.status is JobStatus.PENDING and released.attempts == 0


async def test_heartbeat_extends_only_the_owners_lease(repo):
    job = await new_job(repo)
    await repo.claim(job.job_id, owner="a", lease_seconds=30)
    assert await repo.heartbeat(job.job_id, owner="a", lease_seconds=30, progress=0.5)
    assert not await repo.heartbeat(job.job_id, owner="b", lease_seconds=30, progress=0.9)
    assert (await repo.get(job.job_id)).progress == 0.5


async def test_expired_leases_are_requeued_or_failed_once_by_concurrent_sweeps(repo):
    jobs = [await new_job(repo) for _ in range(6)]
    for job in jobs:
        await repo.claim(job.job_id, owner="dead-worker", lease_seconds=0.01)
    # the last two have used up their two attempts
    for job in jobs[4:]:
        await repo.retry(job.job_id, owner="dead-worker", error="transient")
        await repo.claim(job.job_id, owner="dead-worker", lease_seconds=0.01)
    await asyncio.sleep(0.05)
    parked: list[uuid.UUID] = []

    async def dead(job):
        await asyncio.sleep(0.01)  # hold the row locks a moment
        parked.append(job.job_id)

    async def sweep():
        async with repo.expire_leases(max_attempts=2, limit=100) as expired:
            for job in expired.failed:  # parked while the rows are locked
                await dead(job)
        return expired.requeued, expired.failed

    results = await asyncio.gather(*(sweep() for _ in range(3)))
    requeued = [job.job_id for r, _ in results for job in r]
    failed = [job.job_id for _, f in results for job in f]
    assert sorted(requeued + failed) == sorted(j.job_id for j in jobs)
    assert len(set(requeued)) == len(requeued) == 4
    assert sorted(failed) == sorted(parked) == sorted(j.job_id for j in jobs[4:])
    # Requeued rows are committed pending and unpublished: the caller (or the
    # outbox) publishes them, never while the row still reads running.
    for job_id in requeued:
        job = await repo.get(job_id)
        assert (job.status, job.published_at) == (JobStatus.PENDING, None)


async def test_a_failed_dead_letter_publish_rolls_the_sweep_back(repo):
    job = await new_job(repo)
    await repo.claim(job.job_id, owner="gone", lease_seconds=0.01)
    await asyncio.sleep(0.05)

    async def broken(job):
        raise RuntimeError("broker down")

    with pytest.raises(RuntimeError):
        async with repo.expire_leases(max_attempts=1, limit=10) as expired:
            for failed in expired.failed:
                await broken(failed)
    assert (await repo.get(job.job_id)).status is JobStatus.RUNNING


async def test_the_outbox_publishes_unconfirmed_jobs_once_across_sweeps(repo):
    jobs = [await new_job(repo) for _ in range(5)]
    await repo.mark_published(jobs[0].job_id)
    await asyncio.sleep(0.05)
    seen: list[uuid.UUID] = []

    async def publish(job):
        await asyncio.sleep(0.01)
        seen.append(job.job_id)

    async def sweep():
        async with repo.lock_unpublished(
            grace_seconds=0.01, republish_after_seconds=3600, limit=100
        ) as owed:
            for job in owed.rows:
                await publish(job)
            await owed.record(owed.rows)
        return owed.rows

    sweeps = [sweep() for _ in range(3)]
    await asyncio.gather(*sweeps)
    assert sorted(seen) == sorted(j.job_id for j in jobs[1:])
    assert await sweep() == []


async def test_an_idempotency_key_is_forgotten_after_its_ttl_and_can_be_used_again(
    repo, database_url
):
    async def submit():
        job_id = uuid.uuid4()
        return await repo.create(
            job_id=job_id,
            input_path=f"inputs/{job_id}.mp4",
            pipeline="basic",
            options={},
            input_bytes=1,
            client_id="acme",
            idempotency_key="order-42",
            request_hash="h1",
        )

    first = await submit()
    assert await submit() is None  # the key is taken
    assert await repo.forget_idempotency_keys(older_than_seconds=3600, limit=10) == 0
    conn = await asyncpg.connect(database_url)
    await conn.execute("UPDATE jobs SET created_at = now() - interval '25 hours'")
    await conn.close()
    assert await repo.forget_idempotency_keys(older_than_seconds=86400, limit=10) == 1
    assert (await repo.get(first.job_id)).idempotency_key is None
    second = await submit()
    assert second is not None and second.job_id != first.job_id


async def test_a_pooled_connection_is_released_without_a_reset_round_trip(database_url):
    # One pool connection, so its backend is the one whose last statement we read.
    repo = await connect_repository(database_url, migrate=True, min_size=1, max_size=1)
    admin = await asyncpg.connect(database_url)
    try:
        job = await new_job(repo)
        assert await repo.get(job.job_id) == job
        last = await admin.fetchval(
            "SELECT query FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            " AND backend_type = 'client backend'"
        )
        assert last == "SELECT * FROM jobs WHERE job_id = $1"  # not RESET ALL and friends

        # A transaction that failed half-way leaves nothing on the reused connection.
        with pytest.raises(asyncpg.UniqueViolationError):
            async with repo.transaction() as conn:
                await conn.execute("UPDATE jobs SET attempts = 9 WHERE job_id = $1", job.job_id)
                await conn.execute(
                    "INSERT INTO jobs (job_id, input_path, pipeline, input_bytes)"
                    " VALUES ($1, 'x', 'basic', 1)",
                    job.job_id,
                )
        assert (await repo.get(job.job_id)).attempts == 0
    finally:
        await admin.close()
        await repo.close()


async def test_a_read_only_database_is_an_outage_not_a_crash(database_url):
    # What a failover can leave behind: connections to a demoted, read-only primary.
    await (await connect_repository(database_url, migrate=True)).close()
    admin = await asyncpg.connect(database_url)
    try:
        name = await admin.fetchval("SELECT current_database()")
        await admin.execute(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')
    finally:
        await admin.close()
    repo = await connect_repository(database_url, migrate=False)
    try:
        # The api answers 503 + Retry-After, the worker waits its claim out.
        with pytest.raises(DependencyUnavailable, match="ReadOnlySQLTransactionError"):
            await new_job(repo)
    finally:
        await repo.close()
