"""Job events, cancel of a running job, and hostile queue messages, on the whole stack."""

import asyncio
import json
import time
import uuid

import aio_pika
import pytest

from services.cli.client import Client
from shared.payload import build_payload
from tests.support.services import queue_depth

pytestmark = pytest.mark.system


async def bind_events_queue(amqp_url: str) -> str:
    """What an integrator does: a queue of its own bound to videoq.events."""
    connection = await aio_pika.connect(amqp_url)
    channel = await connection.channel()
    queue = await channel.declare_queue("integrator.jobs", durable=True)
    await queue.bind("videoq.events", routing_key="job.*")
    await connection.close()
    return queue.name


async def drain(amqp_url: str, queue_name: str) -> list[dict]:
    connection = await aio_pika.connect(amqp_url)
    channel = await connection.channel()
    queue = await channel.get_queue(queue_name)
    events = []
    while (message := await queue.get(no_ack=True, fail=False)) is not None:
        events.append({"key": message.routing_key, **json.loads(message.body)})
    await connection.close()
    return events


def test_a_queue_bound_to_the_events_exchange_sees_pending_running_completed_in_order(
    stack, settings, sample_mp4
):
    amqp = settings.amqp_url.get_secret_value()
    with Client(stack.start_all()) as client:  # the services declare videoq.events
        queue = asyncio.run(bind_events_queue(amqp))
        job_id = client.submit(sample_mp4, frame_stride=5)
        assert client.wait(job_id, timeout=60)["status"] == "completed"
        events: list[dict] = []
        deadline = time.monotonic() + 30  # the janitor publishes events each sweep
        while not events or events[-1]["status"] != "completed":
            assert time.monotonic() < deadline, events
            events += [e for e in asyncio.run(drain(amqp, queue)) if e["job_id"] == job_id]
            time.sleep(0.2)
    assert [e["status"] for e in events] == ["pending", "running", "completed"]
    assert [e["key"] for e in events] == ["job.pending", "job.running", "job.completed"]
    assert [e["attempt"] for e in events] == [0, 1, 1]
    assert all(set(e) == {"key", "job_id", "status", "tag", "timestamp", "attempt"} for e in events)


def test_a_running_job_is_cancelled_at_its_next_heartbeat(stack, settings, sample_mp4):
    with Client(stack.start_api()) as client:
        stack.start_worker(VIDEOQ_TEST_SLOW_SECONDS="0.5")  # 10 s of work
        job_id = client.submit(sample_mp4, pipeline="slow")
        while client.status(job_id)["status"] != "running":
            time.sleep(0.1)
        asked = time.monotonic()
        response = client._http.delete(f"/video/jobs/{job_id}")
        assert response.status_code == 202 and response.json()["cancel_requested"] is True
        final = client.wait(job_id, timeout=30)
        assert (final["status"], final["error_message"]) == ("failed", "Cancelled")
        assert time.monotonic() - asked < 5  # stopped, not run to the end of its 10 s
        # and the worker is free for the next job
        assert client.wait(client.submit(sample_mp4), timeout=60)["status"] == "completed"


@pytest.mark.parametrize(
    "body,reason",
    [
        (b"not json", "invalid payload: message body is not UTF-8 JSON"),
        (b'{"job_id": "nope"}', "invalid payload: job_id is not a UUID"),
        (b'{"job_id": "%s", "extra": 1}' % str(uuid.uuid4()).encode(), "invalid payload"),
        (None, "unknown job id"),  # well-formed, but no such job
    ],
)
def test_hostile_messages_are_parked_with_a_reason_and_the_worker_carries_on(
    stack, settings, sample_mp4, body, reason
):
    amqp = settings.amqp_url.get_secret_value()
    body = body if body is not None else build_payload(uuid.uuid4())
    with Client(stack.start_all()) as client:

        async def publish() -> None:
            connection = await aio_pika.connect(amqp)
            channel = await connection.channel()
            exchange = await channel.get_exchange("videoq.jobs")
            await exchange.publish(aio_pika.Message(body), routing_key="process")
            await connection.close()

        asyncio.run(publish())
        deadline = time.monotonic() + 20
        while (
            asyncio.run(queue_depth(amqp, "videoq.dead.jobs")) == 0 and time.monotonic() < deadline
        ):
            time.sleep(0.1)
        assert asyncio.run(queue_depth(amqp, "videoq.dead.jobs")) == 1
        assert client.wait(client.submit(sample_mp4), timeout=60)["status"] == "completed"
    lines = [json.loads(line) for line in stack.log("worker").splitlines() if line.startswith("{")]
    parked = [line for line in lines if line["event"] == "message.parked"]
    assert len(parked) == 1 and parked[0]["reason"].startswith(reason)


def test_a_duplicate_message_for_a_finished_job_is_dropped(stack, settings, sample_mp4):
    amqp = settings.amqp_url.get_secret_value()
    with Client(stack.start_all()) as client:
        job_id = client.submit(sample_mp4)
        assert client.wait(job_id, timeout=60)["status"] == "completed"
        too_late = client._http.delete(f"/video/jobs/{job_id}")
        assert (too_late.status_code, too_late.json()["detail"]) == (
            409,
            "Job already finished (completed)",
        )

        async def publish_again() -> None:
            connection = await aio_pika.connect(amqp)
            channel = await connection.channel()
            exchange = await channel.get_exchange("videoq.jobs")
            await exchange.publish(
                aio_pika.Message(build_payload(uuid.UUID(job_id))), routing_key="process"
            )
            await connection.close()

        asyncio.run(publish_again())
        deadline = time.monotonic() + 20
        while '"message.duplicate_dropped"' not in stack.log("worker"):
            assert time.monotonic() < deadline, "duplicate never consumed"
            time.sleep(0.1)
        final = client.status(job_id)
    assert (final["status"], final["attempts"]) == ("completed", 1)
    assert asyncio.run(queue_depth(amqp, "videoq.jobs.process")) == 0
