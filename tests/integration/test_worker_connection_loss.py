"""A lost broker connection stops the consuming, never the work: the job in
hand runs on, keeps its lease through the database and stores its results,
and the worker consumes again once the connection is back."""

import uuid
from urllib.parse import quote, unquote, urlsplit

import httpx
import pytest

from services.worker.main import start as start_worker
from shared.backends import Backends, open_backends
from shared.jobs import JobStatus, results_key
from shared.metrics import Metrics
from tests.support.submit import submit_video
from tests.support.waiting import async_wait_until

pytestmark = pytest.mark.integration


async def _close_connections(rabbitmq_api: str, vhost: str, connection_name: str) -> int:
    """Close, from the broker's side, every connection named ``connection_name``
    (the management API lists a new connection within its stats interval, 5 s)."""
    parts = urlsplit(rabbitmq_api)
    base = f"{parts.scheme}://{parts.hostname}:{parts.port}"
    auth = (unquote(parts.username or ""), unquote(parts.password or ""))
    async with httpx.AsyncClient(base_url=base, auth=auth, timeout=10) as http:

        async def named() -> list[str]:
            found = await http.get(f"/api/vhosts/{quote(vhost, safe='')}/connections")
            found.raise_for_status()
            return [
                c["name"]
                for c in found.json()
                if c.get("client_properties", {}).get("connection_name") == connection_name
            ]

        names = await async_wait_until(named, timeout=15, interval=0.5, what="the connection")
        for name in names:
            (await http.delete(f"/api/connections/{quote(name, safe='')}")).raise_for_status()
    return len(names)


async def test_a_job_in_hand_survives_its_worker_losing_the_broker_connection(
    settings, services_ready, sample_mp4, monkeypatch
):
    # 10 frames at 0.3 s each: the connection drops while the job runs.
    monkeypatch.setenv("VIDEOQ_TEST_SLOW_SECONDS", "0.3")
    settings = settings.model_copy(update={"lease_seconds": 3.0})
    vhost = unquote(urlsplit(settings.amqp_url.get_secret_value()).path.lstrip("/"))
    client = await open_backends(settings, app_id="client")
    backends = await open_backends(settings, app_id="worker-under-test")
    # The worker as videoq-worker starts it.
    stop_worker = await start_worker(settings, backends, Metrics())
    try:
        job_id = await submit_video(client, settings, sample_mp4, pipeline="slow", max_frames=10)
        await async_wait_until(
            lambda: _status(client, job_id, JobStatus.RUNNING), timeout=15, what="job running"
        )
        assert (
            await _close_connections(services_ready.rabbitmq_api, vhost, "worker-under-test") == 1
        )
        await async_wait_until(
            lambda: _status(client, job_id, JobStatus.COMPLETED), timeout=30, what="job completed"
        )
        job = await client.repo.get(job_id)
        assert job is not None and job.attempts == 1  # one claim: never taken from it
        assert await client.store.size(results_key(job_id)) > 0
        # And the worker consumes again on the new connection.
        after = await submit_video(client, settings, sample_mp4, pipeline="noop")
        await async_wait_until(
            lambda: _status(client, after, JobStatus.COMPLETED), timeout=30, what="next job"
        )
    finally:
        await stop_worker()
        await backends.close()
        await client.close()


async def _status(backends: Backends, job_id: uuid.UUID, status: JobStatus) -> bool:
    job = await backends.repo.get(job_id)
    return job is not None and job.status is status
