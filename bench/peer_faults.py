"""The faults of videoq's tests, injected into the peer (``bench/peer/``):
what it lost, ran twice or left stuck.

    python -m bench.peer_faults [--only NAMES] [--json PATH]
    python -m bench.peer_faults --restart-services [--json PATH]

Each fault runs on a fresh peer (vhost, database, bucket) with an S3 server
of its own (rclone's, as the tests use), so stopping that server touches no
one else. The faults (``--only`` picks some, comma-separated):

- ``worker-kill``: 20 jobs of 0.25 s; once 3 are done, the Celery worker and
  its pool processes are killed with SIGKILL, and a new worker started;
- ``s3-outage``: 10 jobs queued, the S3 server stopped for 20 s (5 submits
  tried meanwhile), then started again on the same port and files;
- ``poison-crash``: a job whose analysis kills its process (videoq's test
  pipeline ``crash``: a segfault, an OOM kill), then 3 ordinary jobs behind it,
  watched for 30 s;
- ``poison-undecodable``: an upload that is not a video;
- ``analyzer-error``: an analyzer that raises an error of its own (videoq's
  test pipeline ``flaky``: a model server away), then an ordinary job;
- ``broker-away``: a second api whose broker URL points at a closed port:
  5 submits.

``--restart-services`` runs, instead, the two faults that restart this
machine's RabbitMQ (``rabbitmqctl stop_app``/``start_app``) and PostgreSQL
(``pg_ctlcluster stop``/``start``) with jobs in flight and submits meanwhile,
as ``tests/system/test_faults.py`` does to videoq. It stops the servers
under everyone on the machine: run it alone.

A job counts as *lost* when its submit was answered 202 and it never ended
(``queued`` or ``running`` at the end: *stuck*), as *run twice* when its row's
``attempts`` is above 1 (the analysis started again; for a job that finished
its S3 upload before the kill, a duplicate side effect).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import boto3  # type: ignore[import-untyped]
import httpx
import psutil  # type: ignore[import-untyped]
import psycopg

from bench.figures import write_json
from bench.inputs import tiny_mp4
from bench.machine import describe, print_description
from bench.peer.stack import PeerStack, peer_stack
from bench.stack import bench_services, default_s3_credentials, own_s3_server
from tests.support.s3server import S3Server
from tests.support.stack import free_port

__all__ = ["Outcome", "main"]

#: videoq's test pipelines (``slow``, ``crash``), loaded as the tests load them.
_PLUGINS = {"PEER_PLUGINS": "tests.support.plugins:register"}
_TERMINAL = ("completed", "failed")


@dataclass
class Outcome:
    """What one fault did to the jobs submitted around it."""

    fault: str
    submitted: int = 0
    #: Submits answered 202 (the client holds a job id).
    accepted: int = 0
    #: Submits answered with an error (the client knows; nothing was promised).
    refused: int = 0
    completed: int = 0
    failed: int = 0
    #: Accepted, never finished: ``queued`` or ``running`` at the end.
    stuck: int = 0
    #: Jobs whose analysis started more than once.
    run_twice: int = 0
    results_objects: int = 0
    notes: list[str] = field(default_factory=list)

    def line(self) -> str:
        return (
            f"  {self.fault:<20} submitted {self.submitted:>3}, accepted {self.accepted:>3},"
            f" refused {self.refused:>2}; completed {self.completed:>3}, failed {self.failed:>2},"
            f" stuck {self.stuck:>2}, run twice {self.run_twice:>2};"
            f" results objects {self.results_objects}"
            + "".join(f"\n  {'':<20} {note}" for note in self.notes)
        )


# --- the peer, driven -----------------------------------------------------------------


class _Client:
    def __init__(self, url: str) -> None:
        self.http = httpx.Client(base_url=url, timeout=60)
        self.clip = tiny_mp4().read_bytes()

    def submit(self, outcome: Outcome, *, pipeline: str = "noop", clip: bytes | None = None) -> str:
        """A submit; its id, or "" when refused (counted in ``outcome``)."""
        outcome.submitted += 1
        try:
            response = self.http.post(
                "/video/submit",
                files={"file": ("clip.mp4", clip or self.clip, "video/mp4")},
                data={"pipeline": pipeline},
            )
        except httpx.HTTPError as exc:
            outcome.refused += 1
            outcome.notes.append(f"submit: {type(exc).__name__}")
            return ""
        if response.status_code != 202:
            outcome.refused += 1
            return ""
        outcome.accepted += 1
        return str(response.json()["job_id"])


def _rows(peer: PeerStack, ids: list[str]) -> list[tuple[str, str, int]]:
    with psycopg.connect(peer.database_url) as conn:
        return conn.execute(
            "SELECT job_id::text, status, attempts FROM jobs WHERE job_id = ANY(%s::uuid[])",
            ([i for i in ids if i],),
        ).fetchall()


def _wait_terminal(peer: PeerStack, ids: list[str], within: float) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if all(status in _TERMINAL for _, status, _ in _rows(peer, ids)):
            return
        time.sleep(0.5)


def _tally(peer: PeerStack, outcome: Outcome, ids: list[str]) -> Outcome:
    rows = _rows(peer, ids)
    outcome.completed = sum(status == "completed" for _, status, _ in rows)
    outcome.failed = sum(status == "failed" for _, status, _ in rows)
    outcome.stuck = sum(status not in _TERMINAL for _, status, _ in rows)
    outcome.run_twice = sum(attempts > 1 for _, _, attempts in rows)
    stuck = sorted({status for _, status, _ in rows if status not in _TERMINAL})
    if stuck:
        outcome.notes.append(f"stuck rows are {', '.join(stuck)}")
    s3 = boto3.client("s3", endpoint_url=peer.s3_endpoint)
    with contextlib.suppress(Exception):
        listed = s3.list_objects_v2(Bucket=peer.bucket, Prefix="results/")
        outcome.results_objects = int(listed.get("KeyCount", 0))
    return outcome


def _kill_worker(peer: PeerStack, name: str = "worker") -> None:
    """SIGKILL the Celery worker and its pool processes, as a container kill does."""
    victims = [psutil.Process(pid) for pid in peer.pids(name)]
    for victim in victims:
        with contextlib.suppress(psutil.Error):
            victim.kill()
    psutil.wait_procs(victims, timeout=10)
    peer.procs.pop(name).wait(timeout=10)


def _wait_for(check: Callable[[], bool], within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.2)
    return False


# --- the faults ---------------------------------------------------------------------------


async def worker_kill(peer: PeerStack, server: S3Server) -> Outcome:
    outcome = Outcome("worker kill -9")
    await peer.start_worker(1, **_PLUGINS, VIDEOQ_TEST_SLOW_SECONDS="0.05")
    client = _Client(peer.start_api())
    ids = [client.submit(outcome, pipeline="slow") for _ in range(20)]
    _wait_for(lambda: sum(s == "completed" for _, s, _ in _rows(peer, ids)) >= 3, 60)
    running = [i for i, s, _ in _rows(peer, ids) if s == "running"]
    _kill_worker(peer)
    outcome.notes.append(f"killed with {len(running)} job(s) running")
    await peer.start_worker(1, **_PLUGINS, VIDEOQ_TEST_SLOW_SECONDS="0.05")
    _wait_terminal(peer, ids, 90)
    return _tally(peer, outcome, ids)


async def s3_outage(peer: PeerStack, server: S3Server) -> Outcome:
    outcome = Outcome("S3 outage 20 s")
    await peer.start_worker(1, **_PLUGINS, VIDEOQ_TEST_SLOW_SECONDS="0.1")
    client = _Client(peer.start_api())
    ids = [client.submit(outcome, pipeline="slow") for _ in range(10)]
    server.stop()
    stopped = time.monotonic()
    try:
        ids += [client.submit(outcome) for _ in range(5)]
        await asyncio.sleep(max(0.0, 20 - (time.monotonic() - stopped)))
    finally:
        server.start()
    _wait_terminal(peer, ids, 120)
    return _tally(peer, outcome, ids)


async def poison_crash(peer: PeerStack, server: S3Server) -> Outcome:
    outcome = Outcome("poison: kills worker")
    await peer.start_worker(1, **_PLUGINS)
    client = _Client(peer.start_api())
    poison = client.submit(outcome, pipeline="crash")
    behind = [client.submit(outcome) for _ in range(3)]
    await asyncio.sleep(30)
    rows = {i: (s, a) for i, s, a in _rows(peer, [poison, *behind])}
    outcome.notes.append(
        f"after 30 s the poison job is {rows[poison][0]} with {rows[poison][1]} attempts;"
        f" {sum(rows[i][0] == 'completed' for i in behind)} of the 3 jobs behind it completed"
    )
    return _tally(peer, outcome, [poison, *behind])


async def poison_undecodable(peer: PeerStack, server: S3Server) -> Outcome:
    outcome = Outcome("poison: not a video")
    await peer.start_worker(1)
    client = _Client(peer.start_api())
    ids = [client.submit(outcome, clip=os.urandom(4096)), client.submit(outcome)]
    _wait_terminal(peer, ids, 60)
    return _tally(peer, outcome, ids)


async def analyzer_error(peer: PeerStack, server: S3Server) -> Outcome:
    outcome = Outcome("analyzer raises")
    await peer.start_worker(1, **_PLUGINS)
    client = _Client(peer.start_api())
    ids = [client.submit(outcome, pipeline="flaky"), client.submit(outcome)]
    _wait_terminal(peer, ids, 20)
    return _tally(peer, outcome, ids)


async def broker_away(peer: PeerStack, server: S3Server) -> Outcome:
    outcome = Outcome("broker away at submit")
    await peer.start_worker(1)
    closed = f"amqp://guest:guest@127.0.0.1:{free_port()}/"
    client = _Client(peer.start_api("api-no-broker", PEER_AMQP_URL=closed))
    started = time.monotonic()
    ids = [client.submit(outcome) for _ in range(5)]
    outcome.notes.append(f"5 submits took {time.monotonic() - started:.1f} s")
    with psycopg.connect(peer.database_url) as conn:
        orphans = conn.execute("SELECT count(*) FROM jobs WHERE status = 'queued'").fetchone()
    s3 = boto3.client("s3", endpoint_url=peer.s3_endpoint)
    inputs = s3.list_objects_v2(Bucket=peer.bucket, Prefix="inputs/").get("KeyCount", 0)
    await asyncio.sleep(10)
    outcome.notes.append(
        f"{orphans[0] if orphans else 0} row(s) left 'queued' and {inputs} input object(s)"
        " behind the refused submits; nothing publishes them (no outbox, no janitor)"
    )
    return _tally(peer, outcome, ids)


def _rabbitmq(action: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", action], check=True, capture_output=True, timeout=120)


def _postgresql(action: str) -> None:
    version = sorted(os.listdir("/etc/postgresql"))[-1]
    extra = ["-m", "fast"] if action == "stop" else []
    argv = ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", action, *extra]
    subprocess.run(argv, check=True, capture_output=True, timeout=120)


async def _restart(
    peer: PeerStack, outcome: Outcome, stop: Callable[[], None], start: Callable[[], None]
) -> Outcome:
    await peer.start_worker(1, **_PLUGINS, VIDEOQ_TEST_SLOW_SECONDS="0.1")
    client = _Client(peer.start_api())
    ids = [client.submit(outcome, pipeline="slow") for _ in range(5)]
    stop()
    try:
        ids += [client.submit(outcome) for _ in range(3)]
        await asyncio.sleep(5)
    finally:
        start()
    await asyncio.sleep(5)
    ids += [client.submit(outcome) for _ in range(2)]
    _wait_terminal(peer, ids, 120)
    return _tally(peer, outcome, ids)


async def rabbitmq_restart(peer: PeerStack, server: S3Server) -> Outcome:
    return await _restart(
        peer,
        Outcome("RabbitMQ restart"),
        lambda: _rabbitmq("stop_app"),
        lambda: _rabbitmq("start_app"),
    )


async def postgresql_restart(peer: PeerStack, server: S3Server) -> Outcome:
    return await _restart(
        peer,
        Outcome("PostgreSQL restart"),
        lambda: _postgresql("stop"),
        lambda: _postgresql("start"),
    )


Fault = Callable[[PeerStack, S3Server], Awaitable[Outcome]]
FAULTS: dict[str, Fault] = {
    "worker-kill": worker_kill,
    "s3-outage": s3_outage,
    "poison-crash": poison_crash,
    "poison-undecodable": poison_undecodable,
    "analyzer-error": analyzer_error,
    "broker-away": broker_away,
}
RESTARTS: dict[str, Fault] = {
    "rabbitmq-restart": rabbitmq_restart,
    "postgresql-restart": postgresql_restart,
}


async def run(names: Sequence[str], faults: dict[str, Fault]) -> list[Outcome]:
    outcomes = []
    for name in names:
        with own_s3_server() as server:
            async with peer_stack(server.url) as peer:
                outcome = await faults[name](peer, server)
        print(outcome.line(), flush=True)
        outcomes.append(outcome)
    return outcomes


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.peer_faults", description=(__doc__ or "").split("\n\n")[0]
    )
    parser.add_argument("--only", help=f"comma-separated, of: {', '.join(FAULTS)}")
    parser.add_argument(
        "--restart-services",
        action="store_true",
        help="restart this machine's RabbitMQ and PostgreSQL (run it alone)",
    )
    parser.add_argument("--json", type=Path, help="write the outcomes here")
    args = parser.parse_args(argv)
    faults = RESTARTS if args.restart_services else FAULTS
    names = args.only.split(",") if args.only else list(faults)
    unknown = [n for n in names if n not in faults]
    if unknown:
        parser.error(f"unknown fault(s): {', '.join(unknown)}")
    if args.restart_services and not (
        shutil.which("rabbitmqctl") and Path("/etc/postgresql").is_dir()
    ):
        parser.error("--restart-services needs rabbitmqctl and pg_ctlcluster on this machine")
    default_s3_credentials()
    info = describe(bench_services())
    print_description(info)
    print("the peer (bench/peer/) under faults, each on a fresh stack:", flush=True)
    outcomes = asyncio.run(run(names, faults))
    write_json(
        args.json,
        {"benchmark": "peer_faults", "machine": info, "outcomes": [asdict(o) for o in outcomes]},
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
