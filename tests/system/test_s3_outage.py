"""The object store goes away and comes back: a real S3 server (rclone's,
backed by files) stopped mid-run and started again on the same data."""

from __future__ import annotations

import os

import boto3
import httpx
import pytest

from services.cli.client import Client
from tests.support.s3server import S3Server
from tests.support.stack import Stack, free_port
from tests.support.waiting import wait_until

pytestmark = pytest.mark.system


def _terminal(client: Client, ids: list[str]) -> list[dict] | None:
    statuses = [client.status(i) for i in ids]
    return statuses if all(s["status"] in ("completed", "failed") for s in statuses) else None


@pytest.mark.single_broker  # the outage is not the broker's; the tiers it uses are tested on both
def test_an_s3_server_stopped_mid_run_loses_nothing_and_the_api_says_503_meanwhile(
    settings, tmp_path, sample_mp4
):
    server = S3Server(
        tmp_path / "s3",
        port=free_port(),
        access_key=os.environ["AWS_ACCESS_KEY_ID"],
        secret_key=os.environ["AWS_SECRET_ACCESS_KEY"],
    )
    server.start()
    boto3.client("s3", endpoint_url=server.url).create_bucket(Bucket="outage")
    own = settings.model_copy(update={"s3_endpoint_url": server.url, "storage_url": "s3://outage"})
    stack = Stack(own, tmp_path / "logs")
    try:
        with Client(stack.start_api()) as client:
            stack.start_worker(VIDEOQ_TEST_SLOW_SECONDS="0.2")
            stack.start_janitor()
            done = [client.submit(sample_mp4, pipeline="noop") for _ in range(2)]
            wait_until(lambda: _terminal(client, done), timeout=60, what="the first jobs")
            # Running when the store goes: 20 frames at 0.2 s each.
            running = [client.submit(sample_mp4, pipeline="slow") for _ in range(2)]
            wait_until(
                lambda: client.status(running[0])["status"] == "running",
                timeout=30,
                what="a job running",
            )
            server.stop()
            try:
                submit = httpx.post(
                    f"{stack.url}/video/submit",
                    files={"file": ("a.mp4", sample_mp4.read_bytes(), "video/mp4")},
                    timeout=60,
                )
                results = httpx.get(f"{stack.url}/video/results/{done[0]}", timeout=60)
                status = httpx.get(f"{stack.url}/video/status/{done[0]}", timeout=60)
            finally:
                server.start()
            assert submit.status_code == 503 and submit.headers["retry-after"], submit.text
            assert results.status_code == 503 and results.headers["retry-after"], results.text
            assert status.status_code == 200  # the status lives in the database
            after = [client.submit(sample_mp4, pipeline="noop")]
            statuses = wait_until(
                lambda: _terminal(client, done + running + after),
                timeout=120,
                interval=0.5,
                what="every job",
            )
            assert [s["status"] for s in statuses] == ["completed"] * 5, statuses
            # What was stored before the outage is still there after it.
            for job_id in done + running + after:
                assert client.results(job_id)["job_id"] == job_id
    finally:
        stack.stop()
        server.stop()
