"""What the benchmarks share: the services they run on, a fresh stack per run,
percentiles, the machine's description, JSON output.

The servers come from the same variables as the tests (``VIDEOQ_TEST_AMQP_URL``,
``VIDEOQ_TEST_RABBITMQ_API``, ``VIDEOQ_TEST_DATABASE_URL``,
``VIDEOQ_TEST_S3_ENDPOINT``), defaulting to this machine's RabbitMQ and
PostgreSQL; without ``VIDEOQ_TEST_S3_ENDPOINT`` a moto server of the run's own
is started on a free port. Every run gets a fresh RabbitMQ vhost, a fresh
database and a fresh bucket, removed afterwards.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import asyncpg  # noqa: E402
import boto3  # noqa: E402
import httpx  # noqa: E402
import psutil  # noqa: E402

from shared.settings import Settings  # noqa: E402
from tests.support.services import Services, drop_vhost, new_vhost  # noqa: E402
from tests.support.stack import Stack  # noqa: E402

__all__ = [
    "REPO",
    "BenchStack",
    "CpuMeter",
    "Percentiles",
    "bench_services",
    "fresh_stack",
    "machine",
    "median",
    "pair_label",
    "percentiles",
    "print_machine",
    "s3_endpoint",
    "services_from",
    "source_tree",
    "submit_clip",
    "write_json",
]

# Child processes (services, Celery, consumers) import bench/, shared/ and services/.
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p
)
os.environ.setdefault("AWS_ACCESS_KEY_ID", "videoq-bench")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "videoq-bench-secret")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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
def moto_server() -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A moto S3 server of our own on a free port: (its URL, its process)."""
    binary = Path(sys.executable).with_name("moto_server")
    port = free_port()
    log = open(Path(tempfile.gettempdir()) / f"videoq-bench-moto-{port}.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [str(binary), "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(url + "/", timeout=1)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("moto_server did not start") from None
                time.sleep(0.2)
        yield url, proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@contextlib.contextmanager
def s3_endpoint(*, own: bool = False) -> Iterator[tuple[str, subprocess.Popen[bytes] | None]]:
    """``VIDEOQ_TEST_S3_ENDPOINT`` if set (and not ``own``), else a moto server of our own."""
    given = os.environ.get("VIDEOQ_TEST_S3_ENDPOINT")
    if given and not own:
        yield given, None
        return
    with moto_server() as (url, proc):
        yield url, proc


def _with_path(url: str, path: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + path, parts.query, ""))


async def create_database(admin_url: str) -> tuple[str, str]:
    name = f"videoq_bench_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(admin_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return name, _with_path(admin_url, name)


async def drop_database(admin_url: str, name: str) -> None:
    admin = await asyncpg.connect(admin_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


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
    workers: list[str] = field(default_factory=list)

    def start_api(self, *, trace: Path | None = None, name: str = "api") -> str:
        """Start an api process (under ``bench.trace`` when ``trace`` names its
        output); returns its URL."""
        if trace is None and name == "api":
            return self.stack.start_api()
        port = free_port()
        self.stack._spawn(
            name,
            [
                sys.executable,
                "-m",
                "bench.trace",
                "api",
                str(trace or self.logs / f"{name}.json"),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
        )
        url = f"http://127.0.0.1:{port}"
        if name == "api":
            self.stack.url = url
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.stack.procs[name].poll() is not None:
                raise RuntimeError(f"{name} exited: {self.stack.log(name)[-2000:]}")
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    return url
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError("api did not start")

    def start_workers(self, count: int, *, trace: Path | None = None, **env: str) -> None:
        """Start ``count`` worker processes (the first under ``bench.trace`` with ``trace``)."""
        for _ in range(count):
            name = f"worker{len(self.workers) + 1}"
            if trace is not None and not self.workers:
                argv = [sys.executable, "-m", "bench.trace", "worker", str(trace)]
                self.stack._spawn(name, argv, env)
            else:
                self.stack.start_worker(name, **env)
            self.workers.append(name)

    def stop_workers(self) -> None:
        for name in self.workers:
            proc = self.stack.procs[name]
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for name in self.workers:
            try:
                self.stack.procs[name].wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.stack.procs[name].kill()
        self.workers.clear()

    def pid(self, name: str) -> int:
        return self.stack.procs[name].pid


@contextlib.asynccontextmanager
async def fresh_stack(s3: str, *, logs: Path | None = None, **overrides: Any):  # type: ignore[no-untyped-def]
    """A ``BenchStack`` on a fresh vhost, database and bucket (nothing started yet)."""
    services = bench_services(s3)
    vhost, amqp_url = new_vhost(services)
    db_name, database_url = await create_database(services.database_url)
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
    bench = BenchStack(services, settings, stack, amqp_url, database_url, bucket, logs)
    try:
        yield bench
    finally:
        stack.stop()
        drop_vhost(services, vhost)
        await drop_database(services.database_url, db_name)
        empty_bucket(s3, bucket)


async def wait_for_consumers(amqp_url: str, queue: str, count: int, within: float = 60) -> None:
    """Until ``queue`` has ``count`` consumers (the workers are up and consuming)."""
    import aio_pika

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
            await _sleep(0.2)
    finally:
        await connection.close()


async def _sleep(seconds: float) -> None:
    import asyncio

    await asyncio.sleep(seconds)


async def retrying(what: str, make: Any, attempts: int = 3) -> Any:
    """Await ``make()``; on a connection error (other people's tests restart
    RabbitMQ and PostgreSQL on this machine) wait and run it again."""
    import asyncio

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


# --- figures ---------------------------------------------------------------------


@dataclass(frozen=True)
class Percentiles:
    count: int
    p50: float
    p95: float
    p99: float
    max: float
    mean: float

    def ms(self) -> str:
        return (
            f"p50 {self.p50 * 1e3:7.1f} ms  p95 {self.p95 * 1e3:7.1f} ms"
            f"  p99 {self.p99 * 1e3:7.1f} ms  max {self.max * 1e3:7.1f} ms"
        )

    def as_dict(self) -> dict[str, float]:
        return {
            "count": self.count,
            "p50": self.p50,
            "p95": self.p95,
            "p99": self.p99,
            "max": self.max,
            "mean": self.mean,
        }


def _rank(ordered: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of an ordered sample."""
    index = max(0, min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1))
    return ordered[index]


def percentiles(values: Sequence[float]) -> Percentiles:
    if not values:
        return Percentiles(0, math.nan, math.nan, math.nan, math.nan, math.nan)
    ordered = sorted(values)
    return Percentiles(
        count=len(ordered),
        p50=_rank(ordered, 0.50),
        p95=_rank(ordered, 0.95),
        p99=_rank(ordered, 0.99),
        max=ordered[-1],
        mean=statistics.fmean(ordered),
    )


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


def median_percentiles(runs: Sequence[Percentiles]) -> Percentiles:
    """The median of each field over repeated runs."""
    return Percentiles(
        count=int(median([r.count for r in runs])),
        p50=median([r.p50 for r in runs]),
        p95=median([r.p95 for r in runs]),
        p99=median([r.p99 for r in runs]),
        max=median([r.max for r in runs]),
        mean=median([r.mean for r in runs]),
    )


def _version(command: list[str]) -> str:
    if not shutil.which(command[0]):
        return "?"
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return "?"
    return out.strip().splitlines()[0] if out.strip() else "?"


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "?"


def machine(services: Services | None = None) -> dict[str, Any]:
    """The machine and the software versions, for the report."""
    import aio_pika
    import fastapi
    import uvicorn

    info: dict[str, Any] = {
        "cores": os.cpu_count(),
        "cpu": _cpu_model(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "python": platform.python_version(),
        "aio_pika": aio_pika.__version__,
        "fastapi": fastapi.__version__,
        "uvicorn": uvicorn.__version__,
        "asyncpg": asyncpg.__version__,
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }
    if services is not None:
        parts = urlsplit(services.rabbitmq_api)
        with contextlib.suppress(Exception):
            overview = httpx.get(
                f"{parts.scheme}://{parts.hostname}:{parts.port}/api/overview",
                auth=(parts.username or "guest", parts.password or "guest"),
                timeout=5,
            ).json()
            info["rabbitmq"] = overview.get("rabbitmq_version", "?")
            info["erlang"] = overview.get("erlang_version", "?")
    info["postgresql"] = _version(["psql", "--version"])
    return info


def print_machine(info: dict[str, Any]) -> None:
    print(
        f"machine: {info['cores']} cores ({info['cpu']}), {info['memory_gib']} GiB;"
        f" Python {info['python']}, aio-pika {info['aio_pika']}, FastAPI {info['fastapi']},"
        f" uvicorn {info['uvicorn']}, asyncpg {info['asyncpg']};"
        f" RabbitMQ {info.get('rabbitmq', '?')}; {info['postgresql']}"
    )
    print(f"load average at start: {' '.join(str(x) for x in info['load_average'])}", flush=True)


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def write_json(path: Path | None, data: dict[str, Any]) -> None:
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")
    print(f"figures written to {path}")


def tiny_mp4(path: Path) -> Path:
    """A tiny H.264 MP4 (64x48, 5 frames): the queue benchmark's input."""
    from services.cli.sample import make_sample_mp4

    if not path.exists():
        make_sample_mp4(path, seconds=0.5, fps=10, size=(64, 48))
    return path


def cache_dir() -> Path:
    path = Path(tempfile.gettempdir()) / "videoq-bench"
    path.mkdir(exist_ok=True)
    return path


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


@contextlib.contextmanager
def services_from(
    bench: BenchStack, *, source: Path | None = None, whatif: str = ""
) -> Iterator[None]:
    """Service processes started inside run the code of ``source`` (a tree
    from ``source_tree``; default: this checkout) with the ``whatif`` patches
    (read by ``bench.trace`` in the service process)."""
    saved = dict(os.environ)
    os.environ["BENCH_WHATIF"] = whatif
    if source is not None:  # the services import shared/, services/, bench/ from there
        os.environ["PYTHONPATH"] = str(source)
        bench.stack.cwd = source
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)
        bench.stack.cwd = None


def pair_label(whatif: str, baseline: str | None) -> str:
    """What a what-if pair compares, for the printed figures."""
    if baseline:
        return f"this checkout against {baseline} as plain"
    return whatif


async def submit_clip(http: httpx.AsyncClient, clip: bytes, *, pipeline: str) -> str:
    """``POST /video/submit`` of an in-memory MP4; returns the job id."""
    response = await http.post(
        "/video/submit",
        files={"file": ("clip.mp4", clip, "video/mp4")},
        data={"pipeline": pipeline},
    )
    response.raise_for_status()
    return str(response.json()["job_id"])
