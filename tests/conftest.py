"""Fixtures shared by the integration and system tests: real services only."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aio_pika
import asyncpg
import boto3
import pytest

from shared.settings import Settings
from tests.support.services import Services, discover_services, drop_vhost, new_vhost
from tests.support.videos import make_mp4
from tools.scratch_db import scratch_database

# Credentials for the test S3 server (scripts/test.sh starts rclone's with these).
os.environ.setdefault("AWS_ACCESS_KEY_ID", "videoq-test")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "videoq-test-secret")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")


@pytest.fixture(scope="session")
def services() -> Iterator[Services]:
    containers: list[object] = []
    found = discover_services(containers)
    yield found
    for container in reversed(containers):
        container.stop()  # type: ignore[attr-defined]


@pytest.fixture(scope="session")
async def services_ready(services: Services) -> Services:
    """Each service answers a real handshake before any test uses it."""
    try:
        connection = await aio_pika.connect(services.amqp_url, timeout=10)
        await connection.close()
    except Exception as exc:
        pytest.fail(f"RabbitMQ at {services.amqp_url} does not answer: {exc!r}", pytrace=False)
    try:
        conn = await asyncpg.connect(services.database_url, timeout=10)
        await conn.close()
    except Exception as exc:
        pytest.fail(f"PostgreSQL does not answer: {exc!r}", pytrace=False)
    try:
        boto3.client("s3", endpoint_url=services.s3_endpoint).list_buckets()
    except Exception as exc:
        pytest.fail(f"S3 endpoint {services.s3_endpoint} does not answer: {exc!r}", pytrace=False)
    return services


@pytest.fixture
def amqp_url(services_ready: Services) -> Iterator[str]:
    """An AMQP URL into a fresh vhost of this test's own."""
    name, url = new_vhost(services_ready)
    yield url
    drop_vhost(services_ready, name)


@pytest.fixture
async def database_url(services_ready: Services) -> AsyncIterator[str]:
    """A URL of a fresh, empty database of this test's own."""
    async with scratch_database(services_ready.database_url, prefix="videoq_test") as url:
        yield url


@pytest.fixture
def bucket(services_ready: Services) -> str:
    name = f"videoq-test-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=services_ready.s3_endpoint).create_bucket(Bucket=name)
    return name


@pytest.fixture
def settings(amqp_url: str, database_url: str, bucket: str, services_ready: Services) -> Settings:
    """Settings for the real stack, with timings short enough for tests."""
    return Settings(
        amqp_url=amqp_url,
        database_url=database_url,
        storage_url=f"s3://{bucket}",
        s3_endpoint_url=services_ready.s3_endpoint,
        retry_delays=(0.5, 1.0, 2.0),
        lease_seconds=3.0,
        janitor_interval_seconds=0.5,
        outbox_grace_seconds=1.0,
        progress_interval_seconds=0.5,
        shutdown_grace_seconds=5.0,
        ops_port=0,
        plugins=("tests.support.plugins:register",),
        # Authentication has its own tests (tests/integration/test_auth.py).
        auth_disabled=True,
    )


@pytest.fixture(scope="session")
def sample_mp4(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2 s, 10 fps, 64x48 H.264 MP4 (20 frames)."""
    return make_mp4(tmp_path_factory.mktemp("videos") / "sample.mp4", seconds=2, fps=10)
