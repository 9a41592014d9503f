"""Operating the stack: metrics, JSON logs without secrets, and the videoq CLI,
on real processes against RabbitMQ, PostgreSQL and S3."""

from __future__ import annotations

import asyncio
import json
import os
import pty
import select
import socket
import subprocess
import sys
import time
import uuid
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import asyncpg
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from services.api.auth import hash_key
from services.cli.client import Client
from tests.support.stack import Stack, free_port
from tests.support.videos import truncate
from tests.support.waiting import wait_until

pytestmark = pytest.mark.system

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(url: str) -> Samples:
    """Every sample of a Prometheus text endpoint: (name, labels) -> value."""
    response = httpx.get(url, timeout=5)
    response.raise_for_status()
    assert response.headers["content-type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


def start_ops_stack(stack: Stack) -> tuple[str, str, str]:
    """api, a worker and a janitor, the last two with their ops port on;
    return the api URL and the worker's and janitor's ops URLs."""
    url = stack.start_api()
    worker_port, janitor_port = free_port(), free_port()
    stack.start_worker(VIDEOQ_OPS_PORT=str(worker_port))
    stack._spawn(
        "janitor",
        [sys.executable, "-m", "services.janitor.main"],
        {"VIDEOQ_OPS_PORT": str(janitor_port)},
    )
    ops = (f"http://127.0.0.1:{worker_port}", f"http://127.0.0.1:{janitor_port}")

    def ready() -> bool:
        try:
            return all(httpx.get(f"{o}/readyz", timeout=2).status_code == 200 for o in ops)
        except httpx.HTTPError:
            return False

    wait_until(ready, timeout=60, what="worker and janitor ops endpoints ready")
    return url, *ops


def log_lines(stack: Stack, name: str) -> list[dict]:
    """Every line of a service's log, each parsed as JSON (fails on any other line)."""
    lines = []
    for number, text in enumerate(stack.log(name).splitlines(), 1):
        try:
            line = json.loads(text)
        except ValueError:
            raise AssertionError(f"{name}.log line {number} is not JSON: {text!r}") from None
        assert isinstance(line, dict), text
        lines.append(line)
    return lines


# --- metrics ----------------------------------------------------------------------


def test_metrics_move_as_real_jobs_go_through_the_api_worker_and_janitor(
    stack, sample_mp4, tmp_path
):
    url, worker_ops, janitor_ops = start_ops_stack(stack)
    for ops in (worker_ops, janitor_ops):
        assert httpx.get(f"{ops}/healthz", timeout=2).json() == {"status": "ok"}
        checks = httpx.get(f"{ops}/readyz", timeout=5).json()["checks"]
        assert checks == {"database": "ok", "broker": "ok", "store": "ok"}
        assert httpx.get(f"{ops}/nope", timeout=2).status_code == 404
    api_before, worker_before = scrape(f"{url}/metrics"), scrape(f"{worker_ops}/metrics")
    assert value(worker_before, "videoq_jobs_in_flight") == 0

    broken = truncate(sample_mp4, keep=0.4, out=tmp_path / "broken.mp4")
    with Client(url) as client:
        good = client.submit(sample_mp4, frame_stride=2)  # 20 frames -> 10 sampled
        assert client.wait(good, timeout=60)["status"] == "completed"
        bad = client.submit(broken)
        assert client.wait(bad, timeout=60)["status"] == "failed"

    def worker_settled() -> Samples | None:
        now = scrape(f"{worker_ops}/metrics")
        return now if value(now, "videoq_job_duration_seconds_count") >= 2 else None

    worker_after = wait_until(worker_settled, timeout=10, what="worker metrics")
    api_after = scrape(f"{url}/metrics")

    def delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    # api: submits, bytes, and the latency histogram by route and status
    assert delta(api_before, api_after, "videoq_jobs_submitted_total", pipeline="basic") == 2
    uploaded = sample_mp4.stat().st_size + broken.stat().st_size
    assert delta(api_before, api_after, "videoq_upload_bytes_total") == uploaded
    submit = {"method": "POST", "route": "/video/submit", "status": "202"}
    assert delta(api_before, api_after, "videoq_http_request_duration_seconds_count", **submit) == 2
    assert (
        delta(
            api_before,
            api_after,
            "videoq_http_request_duration_seconds_bucket",
            le="+Inf",
            **submit,
        )
        == 2
    )
    polls = delta(
        api_before,
        api_after,
        "videoq_http_request_duration_seconds_count",
        route="/video/status/{job_id}",
        status="200",
    )
    assert polls >= 2  # labelled by the route template, never by a job id
    assert not any(good in dict(labels).get("route", "") for _, labels in api_after)
    assert delta(api_before, api_after, "videoq_http_request_duration_seconds_sum", **submit) > 0

    # worker: one completed and one failed attempt, frames, waits, nothing in flight
    def w(name: str, **labels: str) -> float:
        return delta(worker_before, worker_after, name, **labels)

    assert w("videoq_jobs_completed_total", pipeline="basic") == 1
    assert w("videoq_jobs_failed_total", pipeline="basic") == 1
    assert w("videoq_jobs_parked_total", reason="failed") == 1
    assert w("videoq_jobs_retried_total") == 0
    assert w("videoq_frames_processed_total", pipeline="basic") == 10
    assert w("videoq_job_duration_seconds_count", pipeline="basic", outcome="completed") == 1
    assert w("videoq_job_duration_seconds_count", pipeline="basic", outcome="failed") == 1
    assert w("videoq_job_duration_seconds_sum") > 0
    assert w("videoq_job_queue_wait_seconds_count", pipeline="basic") == 2
    assert value(worker_after, "videoq_jobs_in_flight") == 0

    # janitor: serves its own metrics; nothing stranded, so nothing requeued
    janitor = scrape(f"{janitor_ops}/metrics")
    assert value(janitor, "videoq_janitor_requeued_total") == 0
    assert value(janitor, "videoq_janitor_expired_failed_total") == 0
    assert ("videoq_outbox_published_total", frozenset()) in janitor


# --- logs -------------------------------------------------------------------------


def _rabbit_api(services) -> httpx.Client:
    parts = urlsplit(services.rabbitmq_api)
    base = urlunsplit((parts.scheme, f"{parts.hostname}:{parts.port}", parts.path, "", ""))
    return httpx.Client(
        base_url=base, auth=(parts.username or "guest", parts.password or "guest"), timeout=30
    )


@pytest.fixture
def secret() -> str:
    """A password that must never appear in a log line."""
    return f"Sekr1t{uuid.uuid4().hex}"


@pytest.fixture
def secret_settings(settings, services_ready, secret):
    """The test's settings, connecting as a RabbitMQ user and a PostgreSQL role
    of their own whose URLs carry ``secret`` as the password."""
    name = f"videoq-ops-{uuid.uuid4().hex[:8]}"
    amqp = urlsplit(settings.amqp_url.get_secret_value())
    vhost = unquote(amqp.path.lstrip("/"))
    with _rabbit_api(services_ready) as api:
        api.put(f"/api/users/{name}", json={"password": secret, "tags": ""}).raise_for_status()
        api.put(
            f"/api/permissions/{quote(vhost, safe='')}/{name}",
            json={"configure": ".*", "write": ".*", "read": ".*"},
        ).raise_for_status()
    db = urlsplit(settings.database_url.get_secret_value())
    database = db.path.lstrip("/")

    async def admin(*statements: str, database_name: str | None = None) -> None:
        url = services_ready.database_url
        if database_name:
            parts = urlsplit(url)
            url = urlunsplit((parts.scheme, parts.netloc, "/" + database_name, parts.query, ""))
        conn = await asyncpg.connect(url)
        try:
            for statement in statements:
                await conn.execute(statement)
        finally:
            await conn.close()

    role = name.replace("-", "_")
    asyncio.run(
        admin(
            f"CREATE ROLE {role} LOGIN PASSWORD '{secret}'",
            f'ALTER DATABASE "{database}" OWNER TO {role}',
        )
    )
    yield settings.model_copy(
        update={
            "amqp_url": SecretStr(
                f"amqp://{name}:{secret}@{amqp.hostname}:{amqp.port or 5672}{amqp.path}"
            ),
            "database_url": SecretStr(
                f"postgresql://{role}:{secret}@{db.hostname}:{db.port or 5432}/{database}"
            ),
        }
    )
    asyncio.run(
        admin(
            f"REASSIGN OWNED BY {role} TO CURRENT_USER",
            f"DROP OWNED BY {role}",
            database_name=database,
        )
    )
    asyncio.run(admin(f"DROP ROLE IF EXISTS {role}"))
    with _rabbit_api(services_ready) as api:
        api.delete(f"/api/users/{name}")


@pytest.fixture
def secret_stack(secret_settings, tmp_path):
    s = Stack(secret_settings, tmp_path / "logs")
    yield s
    s.stop()


@pytest.mark.single_broker  # what the CLI or the logs show
def test_every_log_line_of_a_real_job_is_json_and_the_lines_about_it_carry_its_job_id(
    secret_stack, sample_mp4, tmp_path
):
    stack = secret_stack
    with Client(stack.start_all()) as client:
        good = client.submit(sample_mp4, frame_stride=5)
        assert client.wait(good, timeout=60)["status"] == "completed"
        bad = client.submit(truncate(sample_mp4, keep=0.4, out=tmp_path / "broken.mp4"))
        assert client.wait(bad, timeout=60)["status"] == "failed"
    wait_until(lambda: '"job.failed"' in stack.log("worker"), timeout=10, what="job.failed")
    stack.stop()

    events: dict[str, list[dict]] = {}
    for name in ("api", "worker", "janitor"):
        lines = log_lines(stack, name)
        assert lines, f"{name} logged nothing"
        for line in lines:
            assert {"ts", "level", "service", "logger", "event"} <= set(line), line
            assert line["service"] == name and line["level"] in (
                "debug",
                "info",
                "warning",
                "error",
                "critical",
            )
            text = json.dumps(line)
            for job_id in (good, bad):
                if job_id in text:  # a line about a job says which, in its own field
                    assert line.get("job_id") == job_id, line
            if line["event"].startswith(("job.", "message.")):
                assert line.get("job_id") in (good, bad), line
            events.setdefault(line["event"], []).append(line)

    def about(event: str, job_id: str) -> list[dict]:
        return [line for line in events.get(event, []) if line.get("job_id") == job_id]

    assert about("job.submitted", good) and about("job.submitted", bad)
    assert about("job.claimed", good)[0]["attempt"] == 1
    assert about("job.completed", good)[0]["seconds"] >= 0
    failed = about("job.failed", bad)
    assert failed and failed[0]["error"] == "Unable to read video file"
    assert failed[0]["level"] == "error"


def test_no_password_appears_in_any_log_line_even_when_a_dependency_is_unreachable(
    secret_stack, secret_settings, secret, sample_mp4
):
    stack = secret_stack
    with Client(stack.start_all()) as client:
        job_id = client.submit(sample_mp4, frame_stride=10)
        assert client.wait(job_id, timeout=60)["status"] == "completed"
    # A worker pointed at a port where no broker listens, with the password in
    # its URL: it logs while it waits for the broker.
    amqp = urlsplit(secret_settings.amqp_url.get_secret_value())
    unreachable = amqp._replace(netloc=f"{amqp.username}:{secret}@127.0.0.1:{free_port()}")
    stack.start_worker("lost-worker", VIDEOQ_AMQP_URL=urlunsplit(unreachable))
    wait_until(
        lambda: '"startup.waiting"' in stack.log("lost-worker"), timeout=30, what="startup.waiting"
    )
    stack.stop()

    starting = [line for line in log_lines(stack, "api") if line["event"] == "api.starting"]
    assert len(starting) == 1
    logged = starting[0]["settings"]
    user = secret_settings.amqp_url.get_secret_value().split("://")[1].split(":")[0]
    assert logged["amqp_url"].startswith(f"amqp://{user}:***@")
    assert logged["database_url"].startswith("postgresql://videoq_ops_")
    assert ":***@" in logged["database_url"]
    waiting = [
        line for line in log_lines(stack, "lost-worker") if line["event"] == "startup.waiting"
    ]
    assert waiting and waiting[0]["dependency"] == "broker"
    aws_secret = os.environ["AWS_SECRET_ACCESS_KEY"]
    for name in ("api", "worker", "janitor", "lost-worker"):
        text = stack.log(name)
        assert secret not in text, f"the password leaked into {name}.log"
        assert aws_secret not in text, f"the S3 secret key leaked into {name}.log"


# --- the videoq CLI ---------------------------------------------------------------------


def _cli_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("VIDEOQ_URL", "VIDEOQ_API_KEY")}


def videoq(url: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.cli.main", "--url", url, *args],
        env=_cli_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.single_broker  # what the CLI or the logs show
def test_videoq_submit_wait_prints_the_results_and_exits_0(stack, sample_mp4, tmp_path):
    url = stack.start_all()
    done = videoq(url, "submit", str(sample_mp4), "--stride", "4", "--wait")
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout)
    assert [r["frame_index"] for r in results["results"]] == [0, 4, 8, 12, 16]
    job_id = results["job_id"]
    assert f"job {job_id} submitted" in done.stderr
    assert "\r" not in done.stderr  # stderr is not a terminal: no progress bar

    status = videoq(url, "status", job_id)
    assert status.returncode == 0 and json.loads(status.stdout)["status"] == "completed"
    target = tmp_path / "out" / "results.json"
    target.parent.mkdir()
    saved = videoq(url, "results", job_id, "-o", str(target))
    assert saved.returncode == 0, saved.stderr
    assert json.loads(target.read_text()) == results
    assert saved.stdout == "" and str(target) in saved.stderr
    assert [p.name for p in target.parent.iterdir()] == ["results.json"]  # no temp file left

    unknown = videoq(url, "results", str(uuid.uuid4()))
    assert unknown.returncode == 5 and "Job not found (HTTP 404)" in unknown.stderr

    submitted = videoq(url, "submit", str(sample_mp4))
    assert submitted.returncode == 0
    assert str(uuid.UUID(submitted.stdout.strip())) == submitted.stdout.strip()


@pytest.mark.single_broker  # what the CLI or the logs show
def test_videoq_submit_wait_of_a_corrupt_file_exits_1_with_the_error(stack, sample_mp4, tmp_path):
    url = stack.start_all()
    broken = truncate(sample_mp4, keep=0.4, out=tmp_path / "broken.mp4")
    done = videoq(url, "submit", str(broken), "--wait")
    assert done.returncode == 1, done.stderr
    assert "Unable to read video file" in done.stderr
    assert done.stdout == ""
    job_id = done.stderr.split("job ", 1)[1].split()[0]
    status = videoq(url, "status", job_id)
    assert status.returncode == 1 and json.loads(status.stdout)["status"] == "failed"
    not_ready = videoq(url, "results", job_id)
    assert not_ready.returncode == 5, not_ready.stderr

    refused = videoq(url, "submit", str(tmp_path / "broken.mp4"), "--pipeline", "nope")
    assert refused.returncode == 2 and "HTTP 422" in refused.stderr
    text = tmp_path / "notes.txt"
    text.write_text("not a video")
    refused = videoq(url, "submit", str(text))
    assert refused.returncode == 2 and "HTTP 415" in refused.stderr


@pytest.mark.single_broker  # what the CLI or the logs show
def test_videoq_submit_wait_draws_a_progress_bar_on_a_terminal_and_times_out_with_3(
    stack, sample_mp4
):
    url = stack.start_api()
    stack.start_worker(VIDEOQ_TEST_SLOW_SECONDS="0.15")  # 20 frames: about 3 s
    stack.start_janitor()

    timed_out = videoq(
        url, "submit", str(sample_mp4), "--pipeline", "slow", "--wait", "--timeout", "0.5"
    )
    assert timed_out.returncode == 3, timed_out.stderr
    assert "still" in timed_out.stderr and "after 0.5 s" in timed_out.stderr

    # stderr on a pseudo-terminal: the bar is drawn in place with \r
    leader, follower = pty.openpty()
    args = ["submit", str(sample_mp4), "--pipeline", "slow", "--wait", "--timeout", "120"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.cli.main", "--url", url, *args],
        env=_cli_env(),
        stdout=subprocess.PIPE,
        stderr=follower,
    )
    os.close(follower)
    drawn = b""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            drawn += chunk
        elif proc.poll() is not None:
            break
    os.close(leader)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, drawn.decode(errors="replace")
    assert json.loads(out)["pipeline"] == "slow"
    # the terminal turns each "\n" into "\r\n"
    frames = drawn.decode(errors="replace").replace("\r\n", "\n").split("\r")
    assert len(frames) >= 3, frames  # redrawn while the job ran
    assert "100% completed" in frames[-1]
    assert any("running" in f for f in frames)
    assert frames[-1].endswith("\n") and frames[-1].count("\n") == 1


@pytest.mark.single_broker  # what the CLI or the logs show
def test_videoq_jobs_lists_jobs_by_status_following_the_cursor(stack, sample_mp4, tmp_path):
    """Needs ``GET /video/jobs`` (being built alongside this CLI)."""
    url = stack.start_all()
    broken = truncate(sample_mp4, keep=0.4, out=tmp_path / "broken.mp4")
    with Client(url) as client:
        good = [client.submit(sample_mp4, frame_stride=10) for _ in range(2)]
        bad = client.submit(broken)
        for job_id in [*good, bad]:
            client.wait(job_id, timeout=60)
        paged = list(client.iter_jobs(page_size=1))  # one job per page: the cursor is followed
        assert sorted(j["job_id"] for j in paged) == sorted([*good, bad])
        assert len(list(client.iter_jobs(limit=2, page_size=1))) == 2

    listed = videoq(url, "jobs", "--json")
    assert listed.returncode == 0, listed.stderr
    jobs = [json.loads(line) for line in listed.stdout.splitlines()]
    assert sorted(j["job_id"] for j in jobs) == sorted([*good, bad])
    assert {j["job_id"]: j["status"] for j in jobs}[bad] == "failed"

    failed = videoq(url, "jobs", "--status", "failed", "--json")
    assert [json.loads(line)["job_id"] for line in failed.stdout.splitlines()] == [bad]
    limited = videoq(url, "jobs", "--limit", "2", "--json")
    assert len(limited.stdout.splitlines()) == 2

    table = videoq(url, "jobs", "--status", "completed")
    assert table.returncode == 0
    lines = table.stdout.splitlines()
    assert lines[0].split()[:2] == ["JOB_ID", "STATUS"]
    assert sorted(line.split()[0] for line in lines[1:]) == sorted(good)
    assert all(line.split()[1] == "completed" for line in lines[1:])


@pytest.mark.single_broker  # what the CLI or the logs show
def test_videoq_sends_its_api_key_and_a_missing_or_wrong_key_exits_6(
    settings, tmp_path, sample_mp4, monkeypatch
):
    key, other = f"vq-{uuid.uuid4().hex}", f"vq-{uuid.uuid4().hex}"
    # Through the environment the services inherit: Stack passes SecretStr
    # settings other than the two URLs as "**********".
    monkeypatch.setenv("VIDEOQ_API_KEYS", f"ops:{hash_key(key)},other:{hash_key(other)}")
    stack = Stack(settings.model_copy(update={"auth_disabled": False}), tmp_path / "logs")
    try:
        url = stack.start_all()
        done = videoq(url, "--api-key", key, "submit", str(sample_mp4), "--stride", "10", "--wait")
        assert done.returncode == 0, done.stderr
        job_id = json.loads(done.stdout)["job_id"]
        mine = videoq(url, "--api-key", key, "jobs", "--json")
        assert [json.loads(line)["job_id"] for line in mine.stdout.splitlines()] == [job_id]
        theirs = videoq(url, "--api-key", other, "jobs", "--json")
        assert theirs.returncode == 0 and theirs.stdout == ""

        for args in ([], ["--api-key", "wrong"]):
            denied = videoq(url, *args, "status", job_id)
            assert denied.returncode == 6, denied.stderr
            assert "HTTP 401" in denied.stderr and "VIDEOQ_API_KEY" in denied.stderr
        from_env = subprocess.run(
            [sys.executable, "-m", "services.cli.main", "--url", url, "status", job_id],
            env={**_cli_env(), "VIDEOQ_API_KEY": key},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert from_env.returncode == 0, from_env.stderr
    finally:
        stack.stop()
    for name in ("api", "worker", "janitor"):
        assert key not in stack.log(name) and other not in stack.log(name)


@pytest.mark.parametrize("service", ["worker", "janitor"])
@pytest.mark.single_broker  # what the CLI or the logs show
def test_a_taken_ops_port_stops_the_service_with_a_line_that_names_the_setting(stack, service):
    with socket.socket() as taken:  # what another service on this host holds
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        start = stack.start_worker if service == "worker" else stack.start_janitor
        proc = start(VIDEOQ_OPS_PORT=str(port))
        assert proc.wait(timeout=60) == 1
    lines = [json.loads(line) for line in stack.log(service).splitlines() if line.startswith("{")]
    failed = [line for line in lines if line["event"] == f"{service}.start_failed"]
    assert len(failed) == 1 and "VIDEOQ_OPS_PORT" in failed[0]["error"], lines
    # Closed cleanly: no traceback, no connection left for the interpreter to tear down.
    assert "Traceback" not in stack.log(service)
