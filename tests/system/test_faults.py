"""Failures lose nothing: real processes killed, real servers restarted."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from urllib.parse import urlsplit

import asyncpg
import boto3
import httpx
import pytest
import standardwebhooks
from pydantic import SecretStr

from services.cli.client import Client
from shared.repository import connect_repository
from tests.support.jobs import add_job
from tests.support.proxy import TcpProxy
from tests.support.receiver import receiver
from tests.support.services import queue_depth, rabbitmqctl
from tests.support.stack import Stack, _env
from tests.support.waiting import wait_until

pytestmark = pytest.mark.system


def rows(settings) -> list[dict]:
    async def fetch():
        conn = await asyncpg.connect(settings.database_url.get_secret_value())
        try:
            return [dict(r) for r in await conn.fetch("SELECT * FROM jobs ORDER BY created_at")]
        finally:
            await conn.close()

    return asyncio.run(fetch())


def result_keys(settings, services) -> list[str]:
    s3 = boto3.client("s3", endpoint_url=services.s3_endpoint)
    listing = s3.list_objects_v2(
        Bucket=settings.storage_url.removeprefix("s3://"), Prefix="results/"
    )
    return [o["Key"] for o in listing.get("Contents", [])]


def queue_messages(services, settings, queue: str) -> int:
    return asyncio.run(queue_depth(settings.amqp_url.get_secret_value(), queue))


def all_terminal(client: Client, ids: list[str]) -> list[dict] | None:
    statuses = [client.status(i) for i in ids]
    return statuses if all(s["status"] in ("completed", "failed") for s in statuses) else None


def test_a_worker_killed_mid_job_is_finished_by_another_exactly_once(
    stack, settings, services_ready, sample_mp4
):
    with Client(stack.start_api()) as client:
        stack.start_janitor()
        stack.start_worker("w1", VIDEOQ_TEST_SLOW_SECONDS="0.3")
        job_id = client.submit(sample_mp4, pipeline="slow")
        wait_until(lambda: client.status(job_id)["status"] == "running", timeout=30, what="running")
        time.sleep(1)
        assert stack.kill("w1") == -signal.SIGKILL
        stack.start_worker("w2", VIDEOQ_TEST_SLOW_SECONDS="0.01")
        final = client.wait(job_id, timeout=60)
        assert final["status"] == "completed" and final["attempts"] == 2
        assert len(client.results(job_id)["results"]) == 20
    assert result_keys(settings, services_ready) == [f"results/{job_id}.json"]
    assert '"event":"janitor.requeued"' in stack.log("janitor")


def test_fifty_jobs_survive_a_worker_killed_and_restarted_every_few_seconds(
    stack, settings, services_ready, sample_mp4
):
    with Client(stack.start_api()) as client:
        stack.start_janitor()
        slow = {"VIDEOQ_TEST_SLOW_SECONDS": "0.02"}
        stack.start_worker("w1", **slow)
        stack.start_worker("w2", **slow)
        ids = [client.submit(sample_mp4, pipeline="slow") for _ in range(50)]
        deadline = time.monotonic() + 300
        victim = 0
        while not all_terminal(client, ids):
            assert time.monotonic() < deadline, "jobs stuck"
            time.sleep(2.5)  # let the workers get on with it
            name = f"w{victim % 2 + 1}"
            starts = stack.log(name).count('"worker.started"')
            stack.kill(name)
            stack.start_worker(name, **slow)
            # Kill the next one only once this one is back: on a loaded
            # machine a start-up can take longer than the kill interval.
            wait_until(
                lambda name=name, starts=starts: stack.log(name).count('"worker.started"') > starts,
                timeout=60,
                what=f"{name} restarted",
            )
            victim += 1
        statuses = [client.status(i) for i in ids]
    assert [s["status"] for s in statuses].count("completed") == 50, statuses
    assert sorted(result_keys(settings, services_ready)) == sorted(f"results/{i}.json" for i in ids)
    assert victim >= 2


def test_jobs_survive_a_rabbitmq_restart(stack, settings, sample_mp4):
    with Client(stack.start_all()) as client:
        ids = [client.submit(sample_mp4) for _ in range(5)]
        rabbitmqctl("stop_app")
        try:
            # The api still accepts work: the outbox publishes it later.
            ids += [client.submit(sample_mp4) for _ in range(3)]
        finally:
            rabbitmqctl("start_app")
        ids += [client.submit(sample_mp4) for _ in range(2)]
        statuses = wait_until(
            lambda: all_terminal(client, ids), timeout=120, interval=0.5, what="all jobs"
        )
    assert [s["status"] for s in statuses] == ["completed"] * 10


def _pg_cluster(action: str) -> None:
    version = sorted(os.listdir("/etc/postgresql"))[-1]
    subprocess.run(
        [
            "pg_ctlcluster",
            "--skip-systemctl-redirect",
            version,
            "main",
            action,
            *(["-m", "fast"] if action == "stop" else []),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )


@pytest.mark.single_broker  # the outage is not the broker's; the tiers it uses are tested on both
def test_jobs_survive_a_postgresql_restart_and_the_api_says_503_meanwhile(
    stack, settings, sample_mp4
):
    if not os.path.isdir("/etc/postgresql"):
        pytest.fail("this test restarts the local PostgreSQL: pg_ctlcluster is needed")
    with Client(stack.start_all()) as client:
        ids = [client.submit(sample_mp4) for _ in range(5)]
        _pg_cluster("stop")
        try:
            status = httpx.get(f"{stack.url}/video/status/{ids[0]}", timeout=30)
            submit = httpx.post(
                f"{stack.url}/video/submit",
                files={"file": ("a.mp4", sample_mp4.read_bytes(), "video/mp4")},
                timeout=30,
            )
            ready = httpx.get(f"{stack.url}/readyz", timeout=30)
        finally:
            _pg_cluster("start")
        assert status.status_code == 503 and status.headers["retry-after"]
        assert submit.status_code == 503
        assert ready.status_code == 503 and ready.json()["checks"]["database"] != "ok"
        assert ready.json()["checks"]["broker"] == "ok"
        wait_until(
            lambda: httpx.get(f"{stack.url}/readyz").status_code == 200, timeout=60, what="ready"
        )
        ids += [client.submit(sample_mp4) for _ in range(3)]
        statuses = wait_until(
            lambda: all_terminal(client, ids), timeout=120, interval=0.5, what="all jobs"
        )
    assert [s["status"] for s in statuses] == ["completed"] * 8


@pytest.mark.single_broker  # the outage is not the broker's; the tiers it uses are tested on both
def test_jobs_retry_through_an_object_store_outage_and_complete(
    settings, services_ready, tmp_path, sample_mp4
):
    endpoint = urlsplit(services_ready.s3_endpoint)
    proxy = TcpProxy(endpoint.hostname, endpoint.port)
    proxied = settings.model_copy(update={"s3_endpoint_url": f"http://127.0.0.1:{proxy.port}"})
    stack = Stack(proxied, tmp_path / "logs")
    try:
        with Client(stack.start_api()) as client:
            stack.start_janitor()
            ids = [client.submit(sample_mp4) for _ in range(3)]
            proxy.down()
            stack.start_worker()

            def retried() -> set[str]:
                lines = stack.log("worker").splitlines()
                return {
                    json.loads(line)["job_id"] for line in lines if '"job.retry_scheduled"' in line
                }

            wait_until(lambda: retried() == set(ids), timeout=60, what="every job retried")
            proxy.up()
            statuses = wait_until(
                lambda: all_terminal(client, ids), timeout=90, interval=0.5, what="all jobs"
            )
    finally:
        stack.stop()
        proxy.close()
    assert [s["status"] for s in statuses] == ["completed"] * 3
    assert all(s["attempts"] >= 2 for s in statuses), statuses


def _videoq(settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.cli.main", *args],
        env=_env(settings),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_job_that_always_fails_transiently_walks_every_tier_then_parks_and_replays(
    settings, services_ready, tmp_path, sample_mp4
):
    settings = settings.model_copy(update={"max_attempts": 4})
    stack = Stack(settings, tmp_path / "logs")
    try:
        with Client(stack.start_all()) as client:
            job_id = client.submit(sample_mp4, pipeline="flaky")
            final = client.wait(job_id, timeout=60)
            assert final["status"] == "failed" and final["attempts"] == 4
            assert final["error_message"].endswith("(gave up after 4 attempts)")
            tiers = [
                json.loads(line)["tier"]
                for line in stack.log("worker").splitlines()
                if '"job.retry_scheduled"' in line
            ]
            assert tiers == ["500ms", "1s", "2s"]
            # The management API's counts lag by a stats interval.
            wait_until(
                lambda: queue_messages(services_ready, settings, "videoq.dead.jobs") == 1,
                timeout=20,
                what="parked",
            )
            listed = _videoq(settings, "dlq", "list")
            assert listed.returncode == 0, listed.stderr
            parked = [json.loads(line) for line in listed.stdout.splitlines()]
            assert [p["job_id"] for p in parked] == [job_id] and "gave up" in parked[0]["reason"]
            replay = _videoq(settings, "dlq", "replay")
            assert replay.returncode == 0 and "replayed 1 of 1" in replay.stdout, (
                replay.stdout + replay.stderr
            )
            again = client.wait(job_id, timeout=60, interval=0.05, on_status=lambda s: None)
            assert again["status"] == "failed"
            claims = [line for line in stack.log("worker").splitlines() if '"job.claimed"' in line]
            assert len(claims) == 8  # four attempts, replayed, four more
    finally:
        stack.stop()


def test_a_job_that_kills_its_worker_every_time_ends_failed_and_parked(
    settings, services_ready, tmp_path, sample_mp4
):
    settings = settings.model_copy(update={"max_attempts": 2})
    stack = Stack(settings, tmp_path / "logs")
    try:
        with Client(stack.start_api()) as client:
            stack.start_janitor()
            stack.start_worker("w")
            job_id = client.submit(sample_mp4, pipeline="crash")
            deadline = time.monotonic() + 60
            restarts = 0
            while client.status(job_id)["status"] != "failed":
                assert time.monotonic() < deadline, client.status(job_id)
                if stack.procs["w"].poll() is not None:  # a supervisor restarts it
                    stack.start_worker("w")
                    restarts += 1
                time.sleep(0.2)
            final = client.status(job_id)
    finally:
        stack.stop()
    assert restarts >= 1
    assert final["attempts"] == 2
    assert "lost the job 2 times" in final["error_message"]
    wait_until(
        lambda: queue_messages(services_ready, settings, "videoq.dead.jobs") == 1,
        timeout=20,
        what="parked",
    )


def test_sigterm_hands_the_job_back_and_exits_zero(stack, settings, sample_mp4):
    with Client(stack.start_api()) as client:
        stack.start_worker("w1", VIDEOQ_TEST_SLOW_SECONDS="1")
        job_id = client.submit(sample_mp4, pipeline="slow")
        wait_until(lambda: client.status(job_id)["status"] == "running", timeout=30, what="running")
        started = time.monotonic()
        assert stack.kill("w1", signal.SIGTERM) == 0
        assert time.monotonic() - started < settings.shutdown_grace_seconds + 5
        handed = client.status(job_id)
        assert handed["status"] == "pending" and handed["attempts"] == 0
        stack.start_worker("w2", VIDEOQ_TEST_SLOW_SECONDS="0.01")
        final = client.wait(job_id, timeout=60)
    assert final["status"] == "completed" and final["attempts"] == 1
    assert '"event":"job.released"' in stack.log("w1")


def test_two_janitors_publish_each_stranded_job_once(stack, settings, services_ready):
    async def strand(n: int) -> list[uuid.UUID]:
        repo = await connect_repository(settings.database_url.get_secret_value(), migrate=True)
        ids = [uuid.uuid4() for _ in range(n)]
        for job_id in ids:
            await add_job(repo, job_id)
        await repo.close()
        return ids

    ids = asyncio.run(strand(20))
    stack.start_janitor("j1")
    stack.start_janitor("j2")
    wait_until(lambda: all(r["published_at"] for r in rows(settings)), timeout=30, what="published")
    time.sleep(3)  # several more sweeps by both
    wait_until(
        lambda: queue_messages(services_ready, settings, "videoq.jobs.process") >= len(ids),
        timeout=20,
        what="queued",
    )
    assert queue_messages(services_ready, settings, "videoq.jobs.process") == len(ids)
    published = stack.log("j1").count("janitor.published") + stack.log("j2").count(
        "janitor.published"
    )
    assert published == len(ids)


def test_a_job_over_its_time_limit_is_stopped_retried_and_failed_with_the_reason(
    settings, tmp_path, sample_mp4
):
    settings = settings.model_copy(update={"max_attempts": 2, "job_timeout_seconds": 1.0})
    stack = Stack(settings, tmp_path / "logs")
    try:
        with Client(stack.start_api()) as client:
            stack.start_worker(VIDEOQ_TEST_SLOW_SECONDS="0.5")  # 20 frames: 10 s, over the limit
            job_id = client.submit(sample_mp4, pipeline="slow")
            final = client.wait(job_id, timeout=60)
    finally:
        stack.stop()
    assert final["status"] == "failed" and final["attempts"] == 2
    assert final["error_message"] == "Job exceeded the time limit of 1 s (gave up after 2 attempts)"


def test_webhooks_in_the_retry_tiers_survive_a_rabbitmq_restart(settings, sample_mp4, tmp_path):
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    hook_settings = settings.model_copy(
        update={
            "webhook_secrets": SecretStr(f"anonymous:{secret}"),
            # Long enough that every failed delivery sits in the tier while
            # the broker is away.
            "webhook_retry_delays": (8.0, 8.0),
            "webhook_allow_http": True,
            "webhook_allow_networks": ("127.0.0.0/8",),
        }
    )
    stack = Stack(hook_settings, tmp_path / "logs")
    try:
        url = stack.start_all()
        stack.start_notifier()
        jobs = 3
        # Every job's first attempt fails; everything after is accepted.
        with receiver([500] * jobs + [204]) as hook, Client(url) as client:
            ids = [client.submit(sample_mp4, callback_url=hook.url) for _ in range(jobs)]
            wait_until(lambda: len(hook.received) >= jobs, timeout=90, what="first attempts")
            rabbitmqctl("stop_app")
            try:
                time.sleep(2)
            finally:
                rabbitmqctl("start_app")
            wait_until(
                lambda: sum(r.status == 204 for r in hook.received) >= jobs,
                timeout=120,
                interval=0.5,
                what="every webhook delivered after the restart",
            )
            verifier = standardwebhooks.Webhook(secret)
            delivered = {
                verifier.verify(r.body, r.headers)["data"]["job_id"]
                for r in hook.received
                if r.status == 204
            }
            assert delivered == set(ids)
            for job_id in ids:
                log = client.deliveries(job_id)
                assert [(a["attempt"], a["status_code"]) for a in log][-1][1] == 204, log
    finally:
        stack.stop()
