"""compose.yaml as shipped, up in containers: the images from our Dockerfile,
RabbitMQ 4 with our definitions, PostgreSQL with our init script, an S3
server with the bucket and videoq's user (local stand-ins for the images
that cannot be pulled here: tests/compose/compose.standins.yaml).

What a user of `docker compose up` sees: the smoke test passes against the
published api; `docker compose stop` lets a worker hand its job back and exit
0; a worker killed outright leaves its job to the janitor; the management API
shows the topology of shared/topology.py, and each RabbitMQ user can do only
what it was granted, as can videoq's S3 user. The slow jobs run the `slow` test pipeline
(compose.test.yaml): 0.5 s a frame.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiormq
import boto3
import httpx
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from shared.settings import Settings
from shared.topology import build_topology
from tests.support.compose import ROOT, ComposeStack
from tests.support.videos import make_mp4
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.compose, pytest.mark.timeout(600)]

SLOW_SECONDS_PER_FRAME = 0.5  # compose.test.yaml
#: compose.yaml: the worker finishes or hands back its job within this.
SHUTDOWN_GRACE_SECONDS = 25
SERVICE_USERS = ("videoq-api", "videoq-worker", "videoq-janitor", "videoq-notifier")
DEFINITIONS = json.loads((ROOT / "deploy" / "rabbitmq" / "definitions.json").read_text())


def _completions(stack: ComposeStack, job_id: str) -> int:
    """How many times a worker logged this job as completed."""
    lines = stack.service_logs("worker").splitlines()
    return sum(1 for line in lines if '"job.completed"' in line and job_id in line)


def _holder(stack: ComposeStack, job_id: str) -> str:
    """The worker container that claimed ``job_id`` (its log says so)."""

    def find() -> str | None:
        for container in stack.containers("worker"):
            if any(
                '"job.claimed"' in line and job_id in line
                for line in stack.logs(container).splitlines()
            ):
                return container
        return None

    return wait_until(find, timeout=30, interval=0.5, what=f"the worker that claimed {job_id}")


def _wait_running(client: Any, job_id: str) -> None:
    wait_until(
        lambda: (s := client.status(job_id))["status"] == "running" and s["progress"] > 0,
        timeout=120,
        interval=0.5,
        what=f"{job_id} running, with progress",
    )


def test_the_smoke_test_passes_against_the_compose_api(compose_stack: ComposeStack) -> None:
    done = subprocess.run(
        [
            str(Path(sys.executable).with_name("videoq-smoke")),
            compose_stack.api_url,
            "--api-key",
            compose_stack.api_key,
            "--timeout",
            "240",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"smoke: passed against {compose_stack.api_url}" in done.stdout
    # With only their bucket's grants, the services needed nothing more: the
    # S3 server refused them nothing (it logs each refusal).
    refusals = [
        line for line in compose_stack.service_logs("minio").splitlines() if "denied" in line
    ]
    assert refusals == []


def test_the_api_is_published_on_loopback_only(compose_stack: ComposeStack) -> None:
    (api,) = compose_stack.containers("api")
    bindings = compose_stack.inspect(api)["HostConfig"]["PortBindings"]
    assert bindings == {
        "8000/tcp": [{"HostIp": "127.0.0.1", "HostPort": compose_stack.env["API_HOST_PORT"]}]
    }


# ---- PostgreSQL and S3: what compose's init steps made ------------------------------


def _psql(stack: ComposeStack, url: str, sql: str) -> subprocess.CompletedProcess[str]:
    """Run ``sql`` over TCP inside the postgres container, as ``url`` says."""
    argv = [*stack.compose_argv(), "exec", "-T", "postgres", "psql", url, "-Atc", sql]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


def test_postgres_has_the_roles_of_the_init_script(compose_stack: ComposeStack) -> None:
    env = compose_stack.env
    superuser = f"postgresql://postgres:{env['POSTGRES_PASSWORD']}@127.0.0.1/videoq"
    app = f"postgresql://videoq_app:{env['VIDEOQ_DB_APP_PASSWORD']}@127.0.0.1/videoq"
    wrong = f"postgresql://postgres:not-{env['POSTGRES_PASSWORD']}@127.0.0.1/videoq"

    owner = _psql(
        compose_stack,
        superuser,
        "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'videoq'",
    )
    assert (owner.returncode, owner.stdout.strip()) == (0, "videoq_owner"), owner.stderr
    refused = _psql(compose_stack, wrong, "SELECT 1")
    assert refused.returncode != 0 and "password authentication failed" in refused.stderr
    # The services' role reads and writes the rows the migrations made, and no more.
    jobs = _psql(compose_stack, app, "SELECT count(*) FROM jobs")
    assert jobs.returncode == 0 and jobs.stdout.strip().isdigit(), jobs.stderr
    ddl = _psql(compose_stack, app, "CREATE TABLE intruder (id int)")
    assert ddl.returncode != 0 and "permission denied" in ddl.stderr


def _s3(stack: ComposeStack, access_key: str, secret_key: str) -> Any:
    """A boto3 client on the S3 port compose publishes, signing as the services do."""
    published = stack.run("port", "minio", "9000").strip()  # 127.0.0.1:PORT
    return boto3.client(
        "s3",
        endpoint_url=f"http://{published}",
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        region_name="us-east-1",
        config=Config(
            signature_version="s3v4",
            s3={"addressing_style": "path"},
            retries={"max_attempts": 1},
        ),
    )


def _refused(call: Callable[[], object]) -> tuple[str, int]:
    with pytest.raises(ClientError) as refused:
        call()
    response = refused.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]


def test_videoqs_s3_user_can_use_its_bucket_and_nothing_else(
    compose_stack: ComposeStack,
) -> None:
    # What minio-setup granted (deploy/minio/videoq-bucket-policy.json): the
    # objects of the videoq bucket, and listing that bucket; nothing else.
    env = compose_stack.env
    root = _s3(compose_stack, env["MINIO_ROOT_USER"], env["MINIO_ROOT_PASSWORD"])
    videoq = _s3(compose_stack, env["VIDEOQ_S3_ACCESS_KEY"], env["VIDEOQ_S3_SECRET_KEY"])
    token = secrets.token_hex(4)
    other, never = f"other-{token}", f"new-{token}"
    root.create_bucket(Bucket=other)
    root.put_object(Bucket=other, Key="root.txt", Body=b"root's")
    try:
        key = f"policy-check/{token}.txt"
        videoq.put_object(Bucket="videoq", Key=key, Body=b"videoq's")
        assert videoq.get_object(Bucket="videoq", Key=key)["Body"].read() == b"videoq's"
        listed = videoq.list_objects_v2(Bucket="videoq", Prefix="policy-check/")
        assert [o["Key"] for o in listed["Contents"]] == [key]
        videoq.delete_object(Bucket="videoq", Key=key)
        assert _refused(lambda: videoq.head_object(Bucket="videoq", Key=key)) == ("404", 404)

        denied = ("AccessDenied", 403)
        assert _refused(videoq.list_buckets) == denied
        assert _refused(lambda: videoq.create_bucket(Bucket=never)) == denied
        assert _refused(lambda: videoq.delete_bucket(Bucket="videoq")) == denied
        assert _refused(lambda: videoq.list_objects_v2(Bucket=other)) == denied
        assert _refused(lambda: videoq.get_object(Bucket=other, Key="root.txt")) == denied
        assert _refused(lambda: videoq.put_object(Bucket=other, Key="x", Body=b"x")) == denied
        assert _refused(lambda: videoq.delete_object(Bucket=other, Key="root.txt")) == denied
        copy = {"Bucket": other, "Key": "root.txt"}
        assert _refused(lambda: videoq.copy_object(Bucket="videoq", Key="c", CopySource=copy)) == (
            denied
        )
        wrong = _s3(
            compose_stack, env["VIDEOQ_S3_ACCESS_KEY"], "not-" + env["VIDEOQ_S3_SECRET_KEY"]
        )
        assert _refused(lambda: wrong.list_objects_v2(Bucket="videoq"))[1] == 403

        # Nothing refused happened: the other bucket is as root left it.
        assert root.get_object(Bucket=other, Key="root.txt")["Body"].read() == b"root's"
        assert [o["Key"] for o in root.list_objects_v2(Bucket=other)["Contents"]] == ["root.txt"]
        names = {b["Name"] for b in root.list_buckets()["Buckets"]}
        assert {"videoq", other} <= names and never not in names
    finally:
        root.delete_object(Bucket=other, Key="root.txt")
        root.delete_bucket(Bucket=other)


# ---- RabbitMQ: topology and least privilege -------------------------------------


def _management(stack: ComposeStack, user: str, password: str) -> httpx.Client:
    return httpx.Client(base_url=stack.management_url, auth=(user, password), timeout=30)


def _admin(stack: ComposeStack) -> httpx.Client:
    return _management(
        stack, stack.env["RABBITMQ_ADMIN_USER"], stack.env["RABBITMQ_ADMIN_PASSWORD"]
    )


def _password(stack: ComposeStack, user: str) -> str:
    return stack.env[f"VIDEOQ_RABBITMQ_{user.removeprefix('videoq-').upper()}_PASSWORD"]


def test_the_management_api_shows_the_topology_of_the_code(compose_stack: ComposeStack) -> None:
    topology = build_topology(Settings())
    with _admin(compose_stack) as admin:
        queues = {q["name"]: q for q in admin.get("/api/queues/videoq").raise_for_status().json()}
        exchanges = {
            e["name"]: e for e in admin.get("/api/exchanges/videoq").raise_for_status().json()
        }
        bindings = admin.get("/api/bindings/videoq").raise_for_status().json()
    for queue in topology.queues:
        shown = queues.get(queue.name)
        assert shown is not None, f"{queue.name} missing; the broker has {sorted(queues)}"
        assert shown["durable"] is True
        assert shown["type"] == "quorum"
        for argument, value in queue.arguments.items():
            assert shown["arguments"].get(argument) == value, (queue.name, argument)
    assert set(queues) == {q.name for q in topology.queues}, "queues nobody declared"
    for exchange in topology.exchanges:
        shown = exchanges.get(exchange.name)
        assert shown is not None, f"{exchange.name} missing"
        assert (shown["type"], shown["durable"]) == (exchange.type, True)
    shown_bindings = {
        (b["source"], b["destination"], b["routing_key"]) for b in bindings if b["source"]
    }
    assert shown_bindings == {(b.exchange, b.queue, b.routing_key) for b in topology.bindings}


def test_each_rabbitmq_user_has_only_its_grants(compose_stack: ComposeStack) -> None:
    admin_user = compose_stack.env["RABBITMQ_ADMIN_USER"]
    with _admin(compose_stack) as admin:
        users = {u["name"]: u for u in admin.get("/api/users").raise_for_status().json()}
        granted = admin.get("/api/permissions").raise_for_status().json()
        vhosts = {v["name"] for v in admin.get("/api/vhosts").raise_for_status().json()}
    # No guest, no user but the definitions' and the administrator compose adds.
    assert set(users) == {u["name"] for u in DEFINITIONS["users"]} | {admin_user}
    assert vhosts == {"videoq"}
    assert users[admin_user]["tags"] == ["administrator"]
    for name in (u["name"] for u in DEFINITIONS["users"]):
        assert users[name]["tags"] == [], f"{name} has a management tag"
    expected = {
        (p["user"], p["vhost"], p["configure"], p["write"], p["read"])
        for p in DEFINITIONS["permissions"]
    } | {(admin_user, "videoq", ".*", ".*", ".*")}
    assert {(p["user"], p["vhost"], p["configure"], p["write"], p["read"]) for p in granted} == (
        expected
    )

    for user in SERVICE_USERS:
        # A service user logs in over AMQP, but the management API is not its.
        with _management(compose_stack, user, _password(compose_stack, user)) as own:
            assert own.get("/api/whoami").status_code == 401, user
    # And its grants hold where it counts: only the janitor reads the parking lot.
    dead = Settings().queue_dead
    outcomes = asyncio.run(_read_parking_lot(compose_stack, dead))
    assert outcomes == {
        "videoq-api": "refused",
        "videoq-worker": "refused",
        "videoq-janitor": "read",
        "videoq-notifier": "refused",
    }
    # The KEDA user has no password in compose (nothing scales there): locked.
    assert asyncio.run(_login(compose_stack, "videoq-keda", "")) == "refused"
    assert asyncio.run(_login(compose_stack, "guest", "guest")) == "refused"


async def _login(stack: ComposeStack, user: str, password: str) -> str:
    try:
        connection = await asyncio.wait_for(aiormq.connect(stack.amqp_url(user, password)), 30)
    except (aiormq.exceptions.AMQPConnectionError, ConnectionError):
        return "refused"
    await connection.close()
    return "in"


async def _read_parking_lot(stack: ComposeStack, queue: str) -> dict[str, str]:
    outcomes = {}
    for user in SERVICE_USERS:
        connection = await asyncio.wait_for(
            aiormq.connect(stack.amqp_url(user, _password(stack, user))), 30
        )
        try:
            channel = await connection.channel()
            try:
                # no_ack=False and nothing acked: a message there stays there.
                await asyncio.wait_for(channel.basic_get(queue, no_ack=False), 30)
                outcomes[user] = "read"
            except aiormq.exceptions.ChannelAccessRefused:
                outcomes[user] = "refused"
        finally:
            await connection.close()
    return outcomes


# ---- workers stopped and killed ---------------------------------------------------


def test_compose_stop_hands_the_job_back_and_the_worker_exits_zero(
    compose_stack: ComposeStack, tmp_path: Path
) -> None:
    # 80 frames at 0.5 s: 40 s of work, longer than the shutdown grace.
    video = make_mp4(tmp_path / "long.mp4", seconds=8, fps=10)
    frames = 80
    assert frames * SLOW_SECONDS_PER_FRAME > SHUTDOWN_GRACE_SECONDS + 10
    with compose_stack.client() as client:
        job_id = client.submit(video, pipeline="slow")
        _wait_running(client, job_id)
        holder = _holder(compose_stack, job_id)
        workers = compose_stack.containers("worker")
        assert len(workers) == 2

        compose_stack.run("stop", "worker", timeout=120)

        for worker in workers:
            state = compose_stack.inspect(worker)["State"]
            assert (state["Status"], state["ExitCode"]) == ("exited", 0), worker
        handed = client.status(job_id)
        assert (handed["status"], handed["attempts"]) == ("pending", 0), handed
        assert '"job.released"' in compose_stack.logs(holder)

        compose_stack.run("start", "worker", timeout=120)
        final = client.wait(job_id, timeout=300)
        assert (final["status"], final["attempts"]) == ("completed", 1), final
        assert len(client.results(job_id)["results"]) == frames
    wait_until(lambda: _completions(compose_stack, job_id) >= 1, timeout=30, what="its log line")
    assert _completions(compose_stack, job_id) == 1


def test_a_killed_worker_leaves_its_job_to_the_janitor_and_it_completes_once(
    compose_stack: ComposeStack, tmp_path: Path
) -> None:
    video = make_mp4(tmp_path / "sample.mp4", seconds=2, fps=10)  # 20 frames: 10 s of work
    with compose_stack.client() as client:
        job_id = client.submit(video, pipeline="slow")
        _wait_running(client, job_id)
        holder = _holder(compose_stack, job_id)
        subprocess.run(["docker", "kill", holder], capture_output=True, timeout=60, check=True)

        # No hand-back from a killed process: the job stays claimed until its
        # lease (30 s) runs out and the janitor requeues it to the other worker.
        assert client.status(job_id)["status"] == "running"
        final = client.wait(job_id, timeout=300)
        assert (final["status"], final["attempts"]) == ("completed", 2), final
        assert len(client.results(job_id)["results"]) == 20
    assert compose_stack.inspect(holder)["State"]["ExitCode"] == 137
    requeued = [
        line
        for line in compose_stack.service_logs("janitor").splitlines()
        if '"janitor.requeued"' in line and job_id in line
    ]
    assert len(requeued) == 1, requeued
    wait_until(lambda: _completions(compose_stack, job_id) >= 1, timeout=30, what="its log line")
    assert _completions(compose_stack, job_id) == 1
