"""Where a benchmark runs: the servers, a fresh stack per round, and the
processes on it (as ``tests/support/stack.py`` starts them).

The servers come from the same variables as the tests (``VIDEOQ_TEST_AMQP_URL``,
``VIDEOQ_TEST_RABBITMQ_API``, ``VIDEOQ_TEST_DATABASE_URL``,
``VIDEOQ_TEST_S3_ENDPOINT``), defaulting to this machine's RabbitMQ and
PostgreSQL; without ``VIDEOQ_TEST_S3_ENDPOINT`` a real S3 server of the run's
own (rclone's ``serve s3``, as the tests use) is started on a free port. Every run gets a fresh RabbitMQ vhost, a fresh
database and a fresh bucket, removed afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aio_pika
import boto3  # type: ignore[import-untyped]
import httpx
import psutil  # type: ignore[import-untyped]

from shared.settings import Settings
from tests.support.s3server import S3Server
from tests.support.services import Services, drop_vhost, new_vhost
from tests.support.stack import Stack, free_port, terminate
from tools.scratch_db import scratch_database

__all__ = [
    "CHECKOUT",
    "REPO",
    "BenchStack",
    "Code",
    "CpuMeter",
    "bench_services",
    "default_s3_credentials",
    "fresh_stack",
    "own_s3_server",
    "pair_label",
    "retrying",
    "s3_endpoint",
    "source_tree",
    "submit_clip",
    "wait_for_consumers",
]

REPO = Path(__file__).resolve().parents[1]

T = TypeVar("T")


def default_s3_credentials() -> None:
    """Credentials for the S3 server of our own (it is started with them),
    unless ``AWS_*`` are set: for this process's S3 clients and the services
    it starts. A command's ``main`` calls it."""
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "videoq-bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "videoq-bench-secret")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")


# --- the servers ---------------------------------------------------------------


def bench_services(s3: str = "") -> Services:
    return Services(
        amqp_url=os.environ.get("VIDEOQ_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/"),
        rabbitmq_api=os.environ.get(
            "VIDEOQ_TEST_RABBITMQ_API", "http://guest:guest@127.0.0.1:15672"
        ),
        database_url=os.environ.get(
            "VIDEOQ_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
        s3_endpoint=s3,
    )


@contextlib.contextmanager
def own_s3_server() -> Iterator[S3Server]:
    """A real S3 server of our own (rclone's ``serve s3`` on a temporary
    folder, as the tests use) on a free port, started; stopped on exit."""
    with tempfile.TemporaryDirectory(prefix="videoq-bench-s3-") as data:
        server = S3Server(
            Path(data) / "objects",
            port=free_port(),
            access_key=os.environ["AWS_ACCESS_KEY_ID"],
            secret_key=os.environ["AWS_SECRET_ACCESS_KEY"],
        )
        server.start()
        try:
            yield server
        finally:
            server.stop()


@contextlib.contextmanager
def s3_server() -> Iterator[tuple[str, int]]:
    """``own_s3_server()`` as (its URL, its pid)."""
    with own_s3_server() as server:
        assert server.pid is not None
        yield server.url, server.pid


@contextlib.contextmanager
def s3_endpoint(*, own: bool = False) -> Iterator[tuple[str, int | None]]:
    """``VIDEOQ_TEST_S3_ENDPOINT`` if set (and not ``own``), else an S3 server
    of our own: (its URL, its pid if ours)."""
    given = os.environ.get("VIDEOQ_TEST_S3_ENDPOINT")
    if given and not own:
        yield given, None
        return
    with s3_server() as (url, pid):
        yield url, pid


def empty_bucket(endpoint: str, bucket: str, *, remove: bool = True) -> None:
    s3 = boto3.client("s3", endpoint_url=endpoint)
    with contextlib.suppress(Exception):
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            for start in range(0, len(keys), 1000):
                s3.delete_objects(Bucket=bucket, Delete={"Objects": keys[start : start + 1000]})
        for upload in s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []):
            s3.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
        if remove:
            s3.delete_bucket(Bucket=bucket)


# --- the code the services run ---------------------------------------------------


@dataclass(frozen=True)
class Code:
    """The code a service process runs: this checkout, or the source tree of
    another revision (``source_tree``), with the ``whatif`` patches that
    ``bench.trace`` applies at start-up (comma-separated names)."""

    source: Path | None = None
    whatif: str = ""

    @property
    def root(self) -> Path:
        """Where the processes start: ``python -m`` imports ``shared``,
        ``services`` and ``bench`` from there first."""
        return self.source or REPO

    def env(self) -> dict[str, str]:
        return {"BENCH_WHATIF": self.whatif}


CHECKOUT = Code()


@contextlib.contextmanager
def source_tree(rev: str | None) -> Iterator[Path | None]:
    """The source tree of git revision ``rev`` in a temporary folder."""
    if not rev:
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="videoq-baseline-") as tmp:
        archive = subprocess.run(
            ["git", "archive", "--format=tar", rev], cwd=REPO, check=True, capture_output=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        yield Path(tmp)


def pair_label(whatif: str, baseline: str | None) -> str:
    """What a what-if pair compares, for the printed figures."""
    if baseline:
        return f"this checkout against {baseline} as plain"
    return whatif


# --- a fresh stack -------------------------------------------------------------------


@dataclass
class BenchStack:
    """A fresh vhost, database and bucket, and the services running on them."""

    services: Services
    settings: Settings
    stack: Stack
    amqp_url: str
    database_url: str
    bucket: str
    logs: Path
    #: What the services run unless told otherwise.
    code: Code = CHECKOUT
    workers: list[str] = field(default_factory=list)

    def start_api(
        self, name: str = "api", *, trace: Path | None = None, code: Code | None = None
    ) -> str:
        """Start an api process; returns its URL. Plain ``videoq-api``, or
        under ``bench.trace`` when ``trace`` names the tracer's output, when
        it is not the stack's ``api`` or when it runs other code than this
        checkout's (``code``, default: the stack's)."""
        code = code or self.code
        if trace is None and name == "api" and code == CHECKOUT:
            return self.stack.start_api()
        port = free_port()
        tracer = ["bench.trace", "api", str(trace or self.logs / f"{name}.json")]
        address = ["--host", "127.0.0.1", "--port", str(port)]
        argv = [sys.executable, "-m", *tracer, *address]
        self.stack.start(name, argv, code.env(), cwd=code.root)
        url = f"http://127.0.0.1:{port}"
        self.stack.wait_healthy(name, url)
        if name == "api":
            self.stack.url = url
        return url

    def start_workers(self, count: int, *, trace: Path | None = None, **env: str) -> None:
        """Start ``count`` worker processes (the first under ``bench.trace`` with ``trace``)."""
        env = {**self.code.env(), **env}
        for _ in range(count):
            name = f"worker{len(self.workers) + 1}"
            if trace is not None and not self.workers:
                argv = [sys.executable, "-m", "bench.trace", "worker", str(trace)]
                self.stack.start(name, argv, env)
            else:
                self.stack.start_worker(name, **env)
            self.workers.append(name)

    def stop_workers(self) -> None:
        terminate([self.stack.procs[name] for name in self.workers], timeout=30)
        self.workers.clear()

    def pid(self, name: str) -> int:
        return self.stack.procs[name].pid


@contextlib.asynccontextmanager
async def fresh_stack(
    s3: str, *, code: Code = CHECKOUT, logs: Path | None = None, **overrides: Any
) -> AsyncIterator[BenchStack]:
    """A ``BenchStack`` on a fresh vhost, database and bucket (nothing started
    yet), its services running ``code``."""
    services = bench_services(s3)
    vhost, amqp_url = new_vhost(services)
    database = contextlib.AsyncExitStack()
    database_url = await database.enter_async_context(
        scratch_database(services.database_url, prefix="videoq_bench")
    )
    bucket = f"videoq-bench-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3).create_bucket(Bucket=bucket)
    fields: dict[str, Any] = {
        "amqp_url": amqp_url,
        "database_url": database_url,
        "storage_url": f"s3://{bucket}",
        "s3_endpoint_url": s3,
        "auth_disabled": True,
        "ops_port": 0,
    }
    fields.update(overrides)
    settings = Settings(**fields)
    logs = logs or Path(tempfile.mkdtemp(prefix="videoq-bench-logs-"))
    stack = Stack(settings, logs)
    stack.cwd = code.root
    bench = BenchStack(services, settings, stack, amqp_url, database_url, bucket, logs, code)
    try:
        yield bench
    finally:
        stack.stop()
        drop_vhost(services, vhost)
        await database.aclose()
        empty_bucket(s3, bucket)


async def wait_for_consumers(amqp_url: str, queue: str, count: int, within: float = 60) -> None:
    """Until ``queue`` has ``count`` consumers (the workers are up and consuming)."""
    deadline = time.monotonic() + within
    connection = await aio_pika.connect(amqp_url)
    try:
        while True:
            channel = await connection.channel()
            try:
                declared = await channel.declare_queue(queue, passive=True)
                consumers = int(declared.declaration_result.consumer_count or 0)
            except Exception:
                consumers = -1
            with contextlib.suppress(Exception):
                await channel.close()
            if consumers >= count:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"{queue}: {consumers} consumers after {within} s, wanted {count}"
                )
            await asyncio.sleep(0.2)
    finally:
        await connection.close()


async def retrying(what: str, make: Callable[[], Awaitable[T]], attempts: int = 3) -> T:
    """Await ``make()``; on a connection error (other people's tests restart
    RabbitMQ and PostgreSQL on this machine) wait and run it again."""
    for attempt in range(1, attempts + 1):
        try:
            return await make()
        except Exception as exc:  # a dependency went away mid-run
            if attempt == attempts:
                raise
            print(f"  {what} broke ({type(exc).__name__}: {str(exc)[:120]}); running it again")
            await asyncio.sleep(10)
    raise AssertionError("unreachable")


class CpuMeter:
    """CPU seconds (user + system) of each component's processes between two points."""

    def __init__(self, pids: dict[str, list[int]]) -> None:
        self._start = {pid: self._cpu(pid) for group in pids.values() for pid in group}

    @staticmethod
    def _cpu(pid: int) -> float:
        try:
            times = psutil.Process(pid).cpu_times()
        except psutil.Error:
            return 0.0
        return float(times.user + times.system)

    def per_job(self, pids: dict[str, list[int]], jobs: int) -> dict[str, float]:
        """Milliseconds of CPU per job, by component (processes born meanwhile count whole)."""
        return {
            name: sum(self._cpu(pid) - self._start.get(pid, 0.0) for pid in group) / jobs * 1e3
            for name, group in pids.items()
        }


async def submit_clip(
    http: httpx.AsyncClient, clip: bytes, *, pipeline: str, frame_stride: int = 1
) -> str:
    """``POST /video/submit`` of an in-memory MP4; returns the job id."""
    data = {"pipeline": pipeline}
    if frame_stride != 1:
        data["frame_stride"] = str(frame_stride)
    response = await http.post(
        "/video/submit", files={"file": ("clip.mp4", clip, "video/mp4")}, data=data
    )
    response.raise_for_status()
    return str(response.json()["job_id"])
