"""A job longer than RabbitMQ's ``consumer_timeout`` is not cut short.

The broker closes the channel of a consumer that holds a delivery
unacknowledged past ``consumer_timeout`` (30 min by default, checked on the
channel's tick) and requeues the delivery, so an ack-late worker would run
such a job again from the start, forever. videoq's worker acks at claim and
holds the job by its lease in the database. The node's timeout is shortened
here for the channels opened during the test (RabbitMQ 3.10 has no
per-queue setting; 4.x would also take a policy).
"""

import asyncio
import time
import uuid

import aio_pika
import pytest
from aio_pika.abc import AbstractIncomingMessage

from services.worker.main import start as start_worker
from shared.backends import open_backends
from shared.jobs import JobStatus, results_key
from shared.metrics import Metrics
from tests.support.services import broker_setting
from tests.support.submit import submit_video
from tests.support.waiting import async_wait_until

pytestmark = pytest.mark.integration

TIMEOUT_MS = 1500
TICK_MS = 500


async def test_a_job_longer_than_the_consumer_timeout_completes_on_its_first_claim(
    settings, sample_mp4, monkeypatch
):
    monkeypatch.setenv("VIDEOQ_TEST_SLOW_SECONDS", "0.5")  # 8 frames: 4 s, over 1.5 s
    settings = settings.model_copy(update={"lease_seconds": 3.0})
    client = await open_backends(settings, app_id="client")
    try:
        with (
            broker_setting("consumer_timeout", TIMEOUT_MS),
            broker_setting("channel_tick_interval", TICK_MS),
        ):
            # What an ack-late consumer meets: the broker closes its channel.
            assert await _ack_late_consumer_is_cut_off(settings.amqp_url.get_secret_value())
            backends = await open_backends(settings, app_id="worker-under-test")
            stop_worker = await start_worker(settings, backends, Metrics())
        try:
            submitted = time.monotonic()
            job_id = await submit_video(client, settings, sample_mp4, pipeline="slow", max_frames=8)

            async def completed() -> bool:
                job = await client.repo.get(job_id)
                return job is not None and job.status is JobStatus.COMPLETED

            await async_wait_until(completed, timeout=30, interval=0.2, what="job completed")
            job = await client.repo.get(job_id)
            assert job is not None and job.attempts == 1
            # It ran past the timeout more than twice over (the control shows
            # the broker acts within one timeout and a tick).
            assert time.monotonic() - submitted > 2 * (TIMEOUT_MS + TICK_MS) / 1000
            assert await client.store.size(results_key(job_id)) > 0
        finally:
            await stop_worker()
            await backends.close()
    finally:
        await client.close()


async def _ack_late_consumer_is_cut_off(amqp_url: str) -> bool:
    """A consumer that holds a delivery past the timeout has its channel closed
    by the broker (PRECONDITION_FAILED): proof the shortened timeout is in force."""
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel()
        queue = await channel.declare_queue(f"ack-late-{uuid.uuid4().hex[:8]}", auto_delete=True)
        await channel.default_exchange.publish(aio_pika.Message(b"x"), routing_key=queue.name)
        closed = asyncio.get_running_loop().create_future()
        channel.close_callbacks.add(lambda _channel, exc: closed.done() or closed.set_result(exc))

        async def hold(message: AbstractIncomingMessage) -> None:
            """Never acked."""

        await queue.consume(hold)
        reason = await asyncio.wait_for(closed, timeout=15)
        return "PRECONDITION_FAILED" in repr(reason) or "406" in repr(reason)
    finally:
        await connection.close()
