"""Retention, erasure and source= inputs on the real backends (S3, PostgreSQL,
RabbitMQ), with a worker and a janitor in this process."""

import asyncio
import json
import uuid

import aio_pika
import asyncpg
import boto3
import httpx
import pytest

from services.api.app import create_app
from services.janitor.janitor import Janitor
from services.worker.main import build_pipelines
from services.worker.worker import Worker
from shared.backends import open_backends
from shared.metrics import Metrics
from tests.support.waiting import async_wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def library(services_ready) -> str:
    """A bucket of the client's own, holding videos it already has."""
    name = f"videoq-library-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=services_ready.s3_endpoint).create_bucket(Bucket=name)
    return name


@pytest.fixture
def granted(settings, library):
    return settings.model_copy(
        update={"source_prefixes": (("anonymous", f"s3://{library}/library/"),)}
    )


@pytest.fixture
async def stack(granted):
    """An api client on the real backends, with a worker consuming."""
    backends = await open_backends(granted, app_id="videoq-test")
    app = create_app(granted)
    app.state.backends = backends
    worker = Worker(
        settings=granted,
        repo=backends.repo,
        broker=backends.broker,
        store=backends.store,
        pipelines=build_pipelines(granted),
        metrics=Metrics(),
        worker_id="retention-test",
    )
    await worker.start()
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://videoq"
    ) as client:
        client.backends = backends  # type: ignore[attr-defined]
        yield client
    await worker.stop(grace_seconds=0)
    await backends.close()


def _janitor(client, settings, **retention) -> tuple[Janitor, Metrics]:
    metrics = Metrics()
    backends = client.backends
    janitor = Janitor(
        settings=settings.model_copy(update=retention),
        repo=backends.repo,
        broker=backends.broker,
        store=backends.store,
        metrics=metrics,
    )
    return janitor, metrics


def _keys(services_ready, bucket: str) -> list[str]:
    s3 = boto3.client("s3", endpoint_url=services_ready.s3_endpoint)
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return [item["Key"] for page in pages for item in page.get("Contents", [])]


async def _rows_naming(database_url: str, job_id: str) -> dict[str, int]:
    """How many rows of each table in the database mention ``job_id``
    (every table, so tables other features add are checked too)."""
    conn = await asyncpg.connect(database_url)
    try:
        tables = await conn.fetch(
            "SELECT table_name FROM information_schema.tables"
            " WHERE table_schema = 'public' AND table_type = 'BASE TABLE'"
        )
        found = {}
        for row in tables:
            name = row["table_name"]
            count = await conn.fetchval(
                f'SELECT count(*) FROM "{name}" t WHERE t::text LIKE $1', f"%{job_id}%"
            )
            if count:
                found[name] = count
        return found
    finally:
        await conn.close()


async def _bind_events_queue(amqp_url: str) -> str:
    connection = await aio_pika.connect(amqp_url)
    channel = await connection.channel()
    queue = await channel.declare_queue(f"test.events.{uuid.uuid4().hex[:8]}", durable=True)
    await queue.bind("videoq.events", routing_key="job.*")
    await connection.close()
    return queue.name


async def _drain(amqp_url: str, queue_name: str) -> list[dict]:
    connection = await aio_pika.connect(amqp_url)
    channel = await connection.channel()
    queue = await channel.get_queue(queue_name)
    events = []
    for _ in range(1000):
        message = await queue.get(no_ack=True, fail=False)
        if message is None:
            break
        events.append(json.loads(message.body))
    await connection.close()
    return events


def _form(**fields):
    """A multipart body of plain fields (no file part), as a form sends it."""
    return {"files": {name: (None, value) for name, value in fields.items()}}


def _file(sample_mp4, **fields):
    return {"files": {"file": ("a.mp4", sample_mp4.read_bytes(), "video/mp4")}, "data": fields}


async def _wait_status(client, job_id: str, status: str) -> dict:
    async def reached():
        body = (await client.get(f"/video/status/{job_id}")).json()
        return body if body.get("status") == status else None

    return await async_wait_until(reached, timeout=30, what=f"{job_id} {status}")


async def test_retention_deletes_inputs_results_and_jobs_but_never_a_source_input(
    stack, granted, library, services_ready, sample_mp4
):
    boto3.client("s3", endpoint_url=services_ready.s3_endpoint).put_object(
        Bucket=library, Key="library/clip.mp4", Body=sample_mp4.read_bytes()
    )
    uploaded = (await stack.post("/video/submit", **_file(sample_mp4, pipeline="noop"))).json()
    sourced = await stack.post(
        "/video/submit", **_form(source=f"s3://{library}/library/clip.mp4", pipeline="noop")
    )
    assert sourced.status_code == 202, sourced.text
    ids = [uploaded["job_id"], sourced.json()["job_id"]]
    for job_id in ids:
        await _wait_status(stack, job_id, "completed")
    bucket = granted.storage_url.removeprefix("s3://")
    assert any(ids[0] in key for key in _keys(services_ready, bucket))

    # Nothing is past a retention of an hour: the sweep deletes nothing.
    keeping, _ = _janitor(stack, granted, input_retention_seconds=3600)
    assert (await keeping.sweep()).retention.inputs == 0

    await asyncio.sleep(1.2)
    janitor, metrics = _janitor(
        stack, granted, input_retention_seconds=1, results_retention_seconds=1
    )
    report = (await janitor.sweep()).retention
    # The uploaded input goes; the source= input is the client's and stays.
    assert (report.inputs, report.results) == (1, 2)
    assert _keys(services_ready, bucket) == []
    assert _keys(services_ready, library) == ["library/clip.mp4"]
    assert (
        metrics.registry.get_sample_value("videoq_retention_deleted_total", {"kind": "results"})
        == 2
    )
    gone = await stack.get(f"/video/results/{ids[0]}")
    assert gone.status_code == 410
    assert "expired" in gone.json()["detail"]
    status = (await stack.get(f"/video/status/{ids[0]}")).json()
    assert status["status"] == "completed"
    assert status["results_expired_at"] is not None
    assert (await janitor.sweep()).retention.results == 0  # once

    rows, _ = _janitor(stack, granted, job_retention_seconds=1)
    assert (await rows.sweep()).retention.erased == 2
    for job_id in ids:
        assert (await stack.get(f"/video/status/{job_id}")).status_code == 404
        assert await _rows_naming(granted.database_url.get_secret_value(), job_id) == {}
    assert _keys(services_ready, library) == ["library/clip.mp4"]


async def test_erasing_a_finished_job_leaves_nothing_and_frees_its_key(
    stack, granted, services_ready, sample_mp4
):
    headers = {"Idempotency-Key": "erase-me"}
    first = await stack.post("/video/submit", headers=headers, **_file(sample_mp4, pipeline="noop"))
    job_id = first.json()["job_id"]
    await _wait_status(stack, job_id, "completed")
    erased = await stack.delete(f"/video/jobs/{job_id}", params={"erase": "true"})
    assert erased.status_code == 204
    for read in ("/video/status/{}", "/video/results/{}"):
        assert (await stack.get(read.format(job_id))).status_code == 404
    assert (await stack.delete(f"/video/jobs/{job_id}?erase=true")).status_code == 404
    bucket = granted.storage_url.removeprefix("s3://")
    assert [key for key in _keys(services_ready, bucket) if job_id in key] == []
    assert await _rows_naming(granted.database_url.get_secret_value(), job_id) == {}
    again = await stack.post("/video/submit", headers=headers, **_file(sample_mp4, pipeline="noop"))
    assert again.status_code == 202
    assert again.json()["job_id"] != job_id


async def test_a_running_job_is_cancelled_then_erased_when_it_stops(
    stack, granted, services_ready, sample_mp4, monkeypatch
):
    monkeypatch.setenv("VIDEOQ_TEST_SLOW_SECONDS", "0.5")
    submitted = await stack.post("/video/submit", **_file(sample_mp4, pipeline="slow"))
    job_id = submitted.json()["job_id"]
    events = await _bind_events_queue(granted.amqp_url.get_secret_value())
    await _wait_status(stack, job_id, "running")
    janitor, _ = _janitor(stack, granted)
    await janitor.sweep()  # publishes the job's pending and running events
    asked = await stack.delete(f"/video/jobs/{job_id}", params={"erase": "true"})
    assert asked.status_code == 202
    assert asked.json()["erase_requested"] is True
    assert asked.json()["cancel_requested"] is True

    async def erased() -> bool:
        await janitor.sweep()
        return (await stack.get(f"/video/status/{job_id}")).status_code == 404

    await async_wait_until(erased, timeout=30, interval=0.3, what="the job erased")
    # Nothing after the erasure was asked for: not even its cancel's "failed".
    published = await _drain(granted.amqp_url.get_secret_value(), events)
    assert [e["status"] for e in published if e["job_id"] == job_id] == ["pending", "running"]
    bucket = granted.storage_url.removeprefix("s3://")
    assert [key for key in _keys(services_ready, bucket) if job_id in key] == []
    assert await _rows_naming(granted.database_url.get_secret_value(), job_id) == {}


async def test_a_source_must_be_granted_present_an_mp4_and_the_only_input(
    stack, granted, settings, library, services_ready, sample_mp4
):
    s3 = boto3.client("s3", endpoint_url=services_ready.s3_endpoint)
    s3.put_object(Bucket=library, Key="library/clip.mp4", Body=sample_mp4.read_bytes())
    s3.put_object(Bucket=library, Key="library/notes.mp4", Body=b"just some text, no video")
    s3.put_object(Bucket=library, Key="private/clip.mp4", Body=sample_mp4.read_bytes())

    async def submit(source: str):
        return await stack.post("/video/submit", **_form(source=source))

    outside = await submit(f"s3://{library}/private/clip.mp4")
    assert outside.status_code == 403
    assert "VIDEOQ_SOURCE_PREFIXES" in outside.json()["detail"]
    assert (await submit(f"s3://{library}/library/../private/clip.mp4")).status_code == 422
    assert (await submit(f"s3://{library}/library/nothing.mp4")).status_code == 422
    assert (await submit(f"s3://{library}/library/notes.mp4")).status_code == 415
    both = await stack.post(
        "/video/submit",
        data={"source": f"s3://{library}/library/clip.mp4"},
        files={"file": ("a.mp4", sample_mp4.read_bytes(), "video/mp4")},
    )
    assert both.status_code == 422
    assert "exactly one input" in both.json()["detail"]
    neither = await stack.post("/video/submit", **_form(pipeline="noop"))
    assert neither.status_code == 422
    assert _keys(services_ready, library) == sorted(
        ["library/clip.mp4", "library/notes.mp4", "private/clip.mp4"]
    )


async def test_without_granted_prefixes_every_source_is_403(settings, library, sample_mp4):
    backends = await open_backends(settings, app_id="videoq-test")
    app = create_app(settings)
    app.state.backends = backends
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://videoq"
        ) as client:
            answer = await client.post(
                "/video/submit", **_form(source=f"s3://{library}/library/clip.mp4")
            )
        assert answer.status_code == 403
    finally:
        await backends.close()
