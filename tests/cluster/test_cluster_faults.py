"""Broker nodes die under load: the node that leads the jobs queue is killed
twice (the second time with the worker's connection on it) while jobs are
pending and running and clients keep submitting. Every job accepted
completes exactly once, with one claim; the api answers 202 or 503 without
waiting on the dead node; the quorum queue gets its three members back.

The api, a worker (concurrency 1) and a janitor run as host processes, as in
the system tests, given the cluster through its balancer (tests/cluster/conftest.py).
"""

from __future__ import annotations

import asyncio
import collections
import json
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import asyncpg
import boto3
import httpx
import pytest

from shared.settings import Settings
from tests.cluster.plugins import OVERLAP_MARK
from tests.support.cluster import Node, RabbitCluster
from tests.support.services import Services
from tests.support.stack import Stack
from tests.support.videos import make_mp4
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(900)]

#: Per frame: a job of the 20-frame sample takes about 2 s, one of the
#: 100-frame long video 10 s. Long jobs are in hand when a node dies, long
#: enough that the worker is back on the broker before they end.
SLOW_SECONDS = "0.1"
#: How long each node stays dead, submitting every SUBMIT_EVERY seconds.
OUTAGE_SECONDS = 20.0
SUBMIT_EVERY = 2.0
#: "Without waiting on the dead node": the longest a submit may take.
FAST_SUBMIT_SECONDS = 5.0
#: Bounds on the waits (a loaded machine, a cluster that re-forms).
REJOIN_SECONDS = 120.0
DRAIN_SECONDS = 300.0
WORKER_PLACEMENTS = 8


@dataclass
class Answer:
    phase: str
    status: int  # 0: no answer at all
    seconds: float
    job_id: str | None


@dataclass
class Submitter:
    """Submits the sample video and keeps every answer, with its latency."""

    url: str
    video: Path
    long_video: Path
    answers: list[Answer] = field(default_factory=list)

    def submit(self, phase: str, *, long: bool = False) -> None:
        video = self.long_video if long else self.video
        started = time.monotonic()
        try:
            response = httpx.post(
                f"{self.url}/video/submit",
                files={"file": (video.name, video.read_bytes(), "video/mp4")},
                data={"pipeline": "traced"},
                timeout=60,  # long enough to measure the slow answers
            )
            status = response.status_code
            job_id = response.json().get("job_id") if status == 202 else None
        except httpx.HTTPError:
            status, job_id = 0, None
        self.answers.append(Answer(phase, status, time.monotonic() - started, job_id))

    def keep_submitting(self, phase: str, *, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            started = time.monotonic()
            self.submit(phase)
            time.sleep(max(0.0, SUBMIT_EVERY - (time.monotonic() - started)))

    @property
    def accepted(self) -> list[str]:
        return [a.job_id for a in self.answers if a.job_id is not None]


def _rows(settings: Settings) -> dict[str, dict[str, Any]]:
    async def fetch() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(settings.database_url.get_secret_value(), timeout=10)
        try:
            return await conn.fetch("SELECT job_id, status, attempts FROM jobs")
        finally:
            await conn.close()

    return {str(r["job_id"]): dict(r) for r in asyncio.run(fetch())}


def _events(text: str, event: str) -> collections.Counter[str]:
    """How many lines of ``event`` each job_id has in a JSON log."""
    counts: collections.Counter[str] = collections.Counter()
    for line in text.splitlines():
        if f'"{event}"' not in line:
            continue
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("event") == event and record.get("job_id"):
            counts[record["job_id"]] += 1
    return counts


class Scenario:
    """The cluster, the stack and what the test saw, step by step."""

    def __init__(
        self, cluster: RabbitCluster, stack: Stack, settings: Settings, submitter: Submitter
    ) -> None:
        self.cluster = cluster
        self.stack = stack
        self.settings = settings
        self.submitter = submitter
        self.vhost = unquote(urlsplit(settings.amqp_url.get_secret_value()).path[1:])
        self.queue = settings.queue_process
        self.notes: dict[str, Any] = {}

    def leader(self) -> Node:
        return self.cluster.leader(self.vhost, self.queue)

    def connections_on(self, node: Node) -> dict[str, str]:
        """The client connections on ``node``: broker-side name -> client's name."""
        return {
            c["name"]: c["client_properties"].get("connection_name", "?")
            for c in self.cluster.connections(self.vhost)
            if c.get("node") == node.erlang_name
        }

    def worker_consumer(self) -> dict[str, Any] | None:
        """The channel of the jobs queue's one consumer (the worker's, when it
        is idle: a busy worker of concurrency 1 may stop consuming)."""
        found = self.cluster.consumers(self.vhost, self.queue)
        return dict(found[0]["channel_details"]) if len(found) == 1 else None

    def start_worker(self, *, replacing: str | None = None) -> dict[str, Any]:
        """Start the worker; return its consumer's channel once it consumes."""
        self.stack.start_worker("worker", VIDEOQ_TEST_SLOW_SECONDS=SLOW_SECONDS)

        def consuming() -> dict[str, Any] | None:
            channel = self.worker_consumer()
            return channel if channel and channel["name"] != replacing else None

        channel = wait_until(consuming, timeout=60, interval=0.5, what="the worker consuming")
        assert channel is not None
        return channel

    def place_worker_on(self, node: Node) -> int:
        """Restart the idle worker until the balancer puts its connection on
        ``node``; return how many restarts it took."""
        for restarts in range(WORKER_PLACEMENTS):
            channel = wait_until(
                self.worker_consumer, timeout=30, interval=0.5, what="the idle worker consuming"
            )
            assert channel is not None
            if channel["node"] == node.erlang_name:
                self.notes["worker connection"] = channel["connection_name"]
                return restarts
            assert self.stack.kill("worker", signal.SIGTERM) == 0
            self.start_worker(replacing=channel["name"])
        raise AssertionError(f"the worker's connection never landed on {node}")

    def wait_running(self) -> None:
        wait_until(
            lambda: any(r["status"] == "running" for r in _rows(self.settings).values()),
            timeout=60,
            what="a job running",
        )

    def wait_terminal(self, *, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rows = _rows(self.settings)
            if all(
                rows.get(i, {}).get("status") in ("completed", "failed")
                for i in self.submitter.accepted
            ):
                return True
            time.sleep(1)
        return False

    def wait_members(self, phase: str) -> float:
        """Submit on while the killed node's quorum member comes back; return
        how long it took (``inf``: not within REJOIN_SECONDS)."""
        started = time.monotonic()
        want = {n.erlang_name for n in self.cluster.nodes}
        while time.monotonic() - started < REJOIN_SECONDS:
            members, online = self.cluster.members(self.vhost, self.queue)
            if members == want and online == want:
                return time.monotonic() - started
            self.submitter.submit(phase)
            time.sleep(SUBMIT_EVERY)
        return float("inf")

    def dead_letter_node(self) -> str | None:
        """Where the parking lot lives (its leader, or its one node if classic)."""
        try:
            return self.cluster.leader(self.vhost, self.settings.queue_dead).host
        except (httpx.HTTPError, KeyError, StopIteration):
            return None  # not declared, or declared in a way this cannot read

    def kill_leader(self, label: str) -> Node:
        leader = self.leader()
        rows = list(_rows(self.settings).values())
        self.notes[label] = {
            "node": leader.host,
            "connections_on_it": sorted(self.connections_on(leader).values()),
            "worker_connection_on_it": self.notes.get("worker connection")
            in self.connections_on(leader),
            "dead_letter_queue_on": self.dead_letter_node(),
            "jobs_running": sum(r["status"] == "running" for r in rows),
            "jobs_pending": sum(r["status"] == "pending" for r in rows),
        }
        self.cluster.kill(leader)
        return leader

    def outage(self, label: str) -> None:
        """Kill the leader, submit through the outage, start the node again."""
        node = self.kill_leader(label)
        self.submitter.keep_submitting(f"{label}: node down", seconds=OUTAGE_SECONDS)
        self.cluster.revive(node, timeout=REJOIN_SECONDS)
        self.notes[label]["members_back_after_s"] = round(
            self.wait_members(f"{label}: node rejoining"), 1
        )


def test_killing_the_leader_of_the_jobs_queue_twice_loses_and_repeats_nothing(
    rabbit_cluster: RabbitCluster,
    settings: Settings,
    services_ready: Services,
    sample_mp4: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = settings.model_copy(
        update={
            "worker_concurrency": 1,
            "plugins": (*settings.plugins, "tests.cluster.plugins:register"),
        }
    )
    stack = Stack(settings, tmp_path / "logs")
    try:
        long_video = make_mp4(tmp_path / "long.mp4", seconds=10, fps=10)
        submitter = Submitter(stack.start_api(), sample_mp4, long_video)
        stack.start_janitor()
        scene = Scenario(rabbit_cluster, stack, settings, submitter)
        scene.notes["worker connection"] = scene.start_worker()["connection_name"]

        # 1. The leader dies with jobs pending and running, wherever the
        #    worker's connection happens to be.
        for _ in range(4):
            submitter.submit("before", long=True)
        scene.wait_running()
        scene.outage("kill 1")

        # 2. Again, with the worker's connection on the leader: placed while
        #    the worker is idle, so placing it hands back no job.
        drained = scene.wait_terminal(timeout=DRAIN_SECONDS)
        leader = scene.leader()
        scene.notes["worker restarts to reach the leader"] = scene.place_worker_on(leader)
        for _ in range(3):
            submitter.submit("between", long=True)
        scene.wait_running()
        scene.outage("kill 2")

        for _ in range(5):
            submitter.submit("after")
        drained = scene.wait_terminal(timeout=DRAIN_SECONDS) and drained
        members, online = rabbit_cluster.members(scene.vhost, scene.queue)
    finally:
        stack.stop()

    # --- what happened ---------------------------------------------------------------
    accepted = submitter.accepted
    rows = _rows(settings)
    worker_log = stack.log("worker")
    claims = _events(worker_log, "job.claimed")
    completions = _events(worker_log, "job.completed")
    requeued = _events(stack.log("janitor"), "janitor.requeued")
    s3 = boto3.client("s3", endpoint_url=services_ready.s3_endpoint)
    listing = s3.list_objects_v2(
        Bucket=settings.storage_url.removeprefix("s3://"), Prefix="results/"
    )
    results = {o["Key"] for o in listing.get("Contents", [])}
    statuses = collections.Counter(a.status for a in submitter.answers)
    phases: dict[str, dict[str, Any]] = {}
    for a in submitter.answers:
        phase = phases.setdefault(a.phase, {"max_s": 0.0})
        phase[str(a.status)] = phase.get(str(a.status), 0) + 1
        phase["max_s"] = max(phase["max_s"], round(a.seconds, 2))
    summary = {
        "accepted": len(accepted),
        "completed": sum(rows.get(i, {}).get("status") == "completed" for i in accepted),
        "503s": statuses[503],
        "answers": dict(statuses),
        "max_submit_seconds": round(max(a.seconds for a in submitter.answers), 2),
        "submits_by_phase": phases,
        "slow_submits": sum(a.seconds > FAST_SUBMIT_SECONDS for a in submitter.answers),
        "attempts": dict(collections.Counter(rows.get(i, {}).get("attempts") for i in accepted)),
        "claims_per_job": dict(collections.Counter(claims[i] for i in accepted)),
        "completions_per_job": dict(collections.Counter(completions[i] for i in accepted)),
        "janitor_requeued": sum(requeued.values()),
        "results_stored": len(results & {f"results/{i}.json" for i in accepted}),
        "task_exception_never_retrieved": worker_log.count("Task exception was never retrieved"),
        "analyses_at_once": worker_log.count(OVERLAP_MARK),
        "quorum_members_at_end": f"{len(online)} online of {len(members)}",
        **scene.notes,
    }
    with capsys.disabled():
        print("\ncluster faults:", json.dumps(summary, indent=2, default=str))

    problems = []
    if not drained:
        problems.append(f"jobs not finished within {DRAIN_SECONDS:.0f} s")
    if not scene.notes["kill 2"]["worker_connection_on_it"]:
        problems.append("the worker's connection was not on the node killed the second time")
    if set(statuses) - {202, 503}:
        problems.append(f"answers other than 202 and 503: {dict(statuses)}")
    if summary["slow_submits"]:
        problems.append(
            f"{summary['slow_submits']} submits took over {FAST_SUBMIT_SECONDS:.0f} s"
            f" (max {summary['max_submit_seconds']} s)"
        )
    if summary["completed"] != len(accepted):
        problems.append(f"{summary['completed']} of {len(accepted)} accepted jobs completed")
    if summary["attempts"] != {1: len(accepted)}:
        problems.append(f"attempts per job: {summary['attempts']}")
    if summary["claims_per_job"] != {1: len(accepted)}:
        problems.append(f"claims per job: {summary['claims_per_job']}")
    if summary["completions_per_job"] != {1: len(accepted)}:
        problems.append(f"completions per job: {summary['completions_per_job']}")
    if summary["results_stored"] != len(accepted):
        problems.append(f"results of {summary['results_stored']} of {len(accepted)} jobs")
    if summary["task_exception_never_retrieved"]:
        problems.append("the worker log shows `Task exception was never retrieved`")
    if summary["analyses_at_once"]:
        problems.append("the worker (concurrency 1) ran two analyses at once")
    want = {n.erlang_name for n in rabbit_cluster.nodes}
    if members != want or online != want:
        problems.append(f"quorum queue members at the end: {sorted(online)} of {sorted(members)}")
    for label in ("kill 1", "kill 2"):
        if scene.notes[label]["members_back_after_s"] == float("inf"):
            problems.append(f"{label}: the quorum member did not come back")
    assert not problems, "\n".join(problems)
