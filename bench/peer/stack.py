"""The peer as processes (a uvicorn api, a Celery worker) on a fresh vhost,
database and bucket, as ``bench.stack.fresh_stack`` does for videoq."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import boto3  # type: ignore[import-untyped]
import psutil  # type: ignore[import-untyped]

from bench.peer.tasks import QUEUE
from bench.stack import REPO, bench_services, empty_bucket, wait_for_consumers
from tests.support.services import drop_vhost, new_vhost
from tests.support.stack import free_port, terminate, wait_healthy
from tools.scratch_db import scratch_database

__all__ = ["PeerStack", "peer_stack"]


@dataclass
class PeerStack:
    """The peer's servers-side resources and the processes running on them."""

    amqp_url: str
    database_url: str
    s3_endpoint: str
    bucket: str
    logs: Path
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    url: str = ""

    def env(self, **overrides: str) -> dict[str, str]:
        return {
            **os.environ,
            "PEER_AMQP_URL": self.amqp_url,
            "PEER_DATABASE_URL": self.database_url,
            "PEER_S3_ENDPOINT": self.s3_endpoint,
            "PEER_BUCKET": self.bucket,
            "PYTHONUNBUFFERED": "1",
            **overrides,
        }

    def _start(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        with (self.logs / f"{name}.log").open("ab") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", *argv], cwd=REPO, env=env, stdout=out, stderr=out
            )
        self.procs[name] = proc
        return proc

    def start_api(self, name: str = "api", **env: str) -> str:
        """A uvicorn process of ``bench.peer.app``; returns its URL."""
        port = free_port()
        argv = ["uvicorn", "bench.peer.app:app", "--host", "127.0.0.1", "--port", str(port)]
        proc = self._start(name, [*argv, "--log-level", "warning"], self.env(**env))
        url = f"http://127.0.0.1:{port}"
        try:
            wait_healthy(f"{url}/healthz", proc)
        except RuntimeError as exc:
            log = (self.logs / f"{name}.log").read_text()[-2000:]
            raise RuntimeError(f"peer {name}: {exc}: {log}") from None
        if name == "api":
            self.url = url
        return url

    async def start_worker(
        self, processes: int, *, name: str = "worker", pool: str = "prefork", **env: str
    ) -> subprocess.Popen[bytes]:
        """One Celery worker with ``processes`` pool processes, consuming."""
        argv = ["celery", "-A", "bench.peer.tasks", "worker", "-P", pool, "-c", str(processes)]
        quiet = ["--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "WARNING"]
        proc = self._start(name, [*argv, *quiet, "-Q", QUEUE], self.env(**env))
        await wait_for_consumers(self.amqp_url, QUEUE, 1)
        return proc

    def pids(self, name: str) -> list[int]:
        """Process ``name`` and its children (Celery's pool processes)."""
        proc = self.procs.get(name)
        if proc is None or proc.poll() is not None:
            return []
        try:
            return [proc.pid, *(c.pid for c in psutil.Process(proc.pid).children(recursive=True))]
        except psutil.Error:
            return []

    def stop(self, *names: str) -> None:
        terminate([self.procs.pop(n) for n in names or list(self.procs)], timeout=30)


@contextlib.asynccontextmanager
async def peer_stack(s3_endpoint: str, *, logs: Path | None = None) -> AsyncIterator[PeerStack]:
    """A ``PeerStack`` on a fresh vhost, database and bucket (nothing started yet)."""
    services = bench_services(s3_endpoint)
    vhost, amqp_url = new_vhost(services)
    async with contextlib.AsyncExitStack() as cleanup:
        cleanup.callback(drop_vhost, services, vhost)
        database_url = await cleanup.enter_async_context(
            scratch_database(services.database_url, prefix="videoq_bench_peer")
        )
        bucket = f"videoq-peer-{uuid.uuid4().hex[:12]}"
        boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=bucket)
        cleanup.callback(empty_bucket, s3_endpoint, bucket)
        logs = logs or Path(tempfile.mkdtemp(prefix="videoq-bench-peer-"))
        logs.mkdir(parents=True, exist_ok=True)
        peer = PeerStack(amqp_url, database_url, s3_endpoint, bucket, logs)
        try:
            yield peer
        finally:
            peer.stop()
