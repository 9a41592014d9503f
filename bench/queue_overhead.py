"""Benchmark: queue overhead, end to end, against bare Celery and bare aio-pika.

    python -m bench.queue_overhead [--quick] [--jobs N] [--workers W]
        [--worker-concurrency K] [--repeat R] [--concurrency C] [--light-jobs M]
        [--light-rate HZ] [--profile DIR] [--trace DIR]
        [--whatif PATCHES | --baseline REV] [--json PATH]

Each round (default 3; the median of each figure is reported), back to back
on the same RabbitMQ, each on a fresh vhost (and database and bucket):

1. **videoq**: the real stack as processes (``videoq-api``, W ``videoq-worker``,
   ``videoq-janitor``). After a warm-up, two phases with the ``noop`` pipeline
   and a tiny MP4 (64x48, 5 frames):

   - *light load*: M jobs (default 100) submitted open-loop at a fixed rate
     (default 5/s, far below capacity): submit-to-completed latency;
   - *throughput*: N jobs (default 2,000) submitted over HTTP by an async
     client with C requests in flight (default 16): jobs/s from the first
     submit to the last completion, and the latencies (which then include
     the time spent waiting in the queue).

   Latency is from the client's clock at the start of the POST to the job
   row's ``updated_at`` at ``completed`` (the same machine's clock); the row's
   ``created_at`` to ``updated_at`` is reported beside it.
2. **the baselines** (``bench/baselines.py``): a bare Celery no-op task on a
   classic queue with Celery's defaults and on a quorum queue with publisher
   confirms (what videoq guarantees), and a bare aio-pika publish/consume
   loop on a classic and a quorum queue, N messages each.

Prints jobs/s (messages/s), latencies, the CPU each component spent per job
(api, workers, janitor, this database's PostgreSQL backends, RabbitMQ, the S3 server),
and the ratios videoq / Celery and videoq / aio-pika.

Finding where the time goes: ``--profile DIR`` records the api and the worker
with py-spy during the first round's throughput phase and prints a summary
(``bench.hotspots``); ``--trace DIR`` runs them under ``bench.trace`` and
prints the wall-clock time of each step per job; ``--whatif PATCHES`` runs,
in each round, a second videoq with proposed optimisations patched in at
start-up (see ``bench/trace.py``), so their effect is measured in the same
run, before anyone changes the code. ``--baseline REV`` does the same with
the code of git revision REV (extracted with ``git archive``) as the plain
stack and this checkout as the patched one: what a series of commits
changed, measured side by side.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import functools
import importlib.util
import json
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import psutil  # type: ignore[import-untyped]

from bench.baselines import BaselineRun, aiopika_round, celery_round
from bench.figures import (
    Percentiles,
    Row,
    Target,
    median,
    median_percentiles,
    percentiles,
    show,
    write_json,
)
from bench.inputs import small_clip, tiny_mp4
from bench.machine import describe, figures_document, load_average, print_description
from bench.stack import (
    CHECKOUT,
    BenchStack,
    Code,
    CpuMeter,
    bench_services,
    default_s3_credentials,
    fresh_stack,
    pair_label,
    retrying,
    s3_endpoint,
    source_tree,
    submit_clip,
    wait_for_consumers,
)
from tests.support.services import Services

PIPELINE = "noop"
WARMUP = 10


# --- what is measured -----------------------------------------------------------------


@dataclass(frozen=True)
class Work:
    """What every submit sends: the clip and the pipeline to run on it."""

    clip: bytes
    pipeline: str = PIPELINE
    frame_stride: int = 1


@dataclass(frozen=True)
class Submitted:
    """One submit, on the client's clock."""

    job_id: str
    started: float
    answered: float


@dataclass(frozen=True)
class Phase:
    """Throughput and latencies of one phase, from the job rows."""

    jobs: int
    failed: int
    seconds: float
    jobs_per_s: float
    submits_per_s: float
    #: From the start of the POST to the row's ``completed``.
    e2e: Percentiles
    #: From the row's ``created_at`` to its ``completed``.
    row: Percentiles
    #: The POST, to its 202.
    http: Percentiles


@dataclass
class VideoqRun:
    """What one videoq stack measured in one round."""

    light: Phase
    throughput: Phase
    cpu_ms_per_job: dict[str, float]
    #: ``bench.trace``'s step timings of the api and the worker (what-if pairs).
    steps: dict[str, Any] | None = None


@dataclass(frozen=True)
class VideoqFigures:
    """What is printed of a videoq stack: one round's, or the medians of several."""

    jobs_per_s: float
    submits_per_s: float
    light_e2e: Percentiles
    light_row: Percentiles
    light_http: Percentiles
    throughput_e2e: Percentiles
    cpu_ms_per_job: dict[str, float]
    failed: int | None = None

    @classmethod
    def of(cls, run: VideoqRun) -> VideoqFigures:
        return cls(
            jobs_per_s=run.throughput.jobs_per_s,
            submits_per_s=run.throughput.submits_per_s,
            light_e2e=run.light.e2e,
            light_row=run.light.row,
            light_http=run.light.http,
            throughput_e2e=run.throughput.e2e,
            cpu_ms_per_job=run.cpu_ms_per_job,
            failed=run.throughput.failed,
        )

    @classmethod
    def median_of(cls, runs: Sequence[VideoqRun]) -> VideoqFigures:
        return cls(
            jobs_per_s=median([r.throughput.jobs_per_s for r in runs]),
            submits_per_s=median([r.throughput.submits_per_s for r in runs]),
            light_e2e=median_percentiles([r.light.e2e for r in runs]),
            light_row=median_percentiles([r.light.row for r in runs]),
            light_http=median_percentiles([r.light.http for r in runs]),
            throughput_e2e=median_percentiles([r.throughput.e2e for r in runs]),
            cpu_ms_per_job={
                part: median([r.cpu_ms_per_job[part] for r in runs])
                for part in runs[0].cpu_ms_per_job
            },
        )

    def rows(self, name: str, light_rate: float) -> list[Row]:
        failed = "" if self.failed is None else f", failed {self.failed}"
        cpu = ", ".join(f"{k} {v:.1f} ms" for k, v in self.cpu_ms_per_job.items())
        return [
            Row(f"{name} light load: submit->completed", light_rate, "jobs/s", self.light_e2e),
            Row(f"{name} light load: row created->done", light_rate, "jobs/s", self.light_row),
            Row(f"{name} light load: HTTP submit", light_rate, "jobs/s", self.light_http),
            Row(
                f"{name} throughput: submit->completed",
                self.jobs_per_s,
                "jobs/s",
                self.throughput_e2e,
                f"(submits {self.submits_per_s:.0f}/s{failed})",
            ),
            Row(f"{name} CPU per job", note=cpu),
        ]

    def summary(self) -> dict[str, Any]:
        """The figures under the names of the JSON summary."""
        return {
            "videoq_cpu_ms_per_job": self.cpu_ms_per_job,
            "videoq_jobs_per_s": self.jobs_per_s,
            "videoq_submits_per_s": self.submits_per_s,
            "videoq_light_e2e": self.light_e2e,
            "videoq_light_row": self.light_row,
            "videoq_light_http": self.light_http,
            "videoq_throughput_e2e": self.throughput_e2e,
        }


@dataclass
class Round:
    """One round: the videoq stack (and its what-if twin), then the baselines."""

    load_average: list[float]
    videoq: VideoqRun
    whatif: VideoqRun | None = None
    #: The FastAPI + Celery peer (``bench/peer/``), same load, same servers.
    peer: VideoqRun | None = None
    baselines: dict[str, BaselineRun] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"load_average": self.load_average, "videoq": self.videoq}
        if self.whatif is not None:
            out["videoq what-if"] = self.whatif
        if self.peer is not None:
            out["peer"] = self.peer
        return {**out, **self.baselines}


# --- videoq ------------------------------------------------------------------------


async def _submit(http: httpx.AsyncClient, payload: Work) -> Submitted:
    started = time.time()
    job_id = await submit_clip(
        http, payload.clip, pipeline=payload.pipeline, frame_stride=payload.frame_stride
    )
    return Submitted(job_id, started, time.time())


async def submit_closed(
    http: httpx.AsyncClient, payload: Work, count: int, concurrency: int
) -> list[Submitted]:
    """``count`` submits with ``concurrency`` in flight."""
    out: list[Submitted] = []
    left = iter(range(count))

    async def lane() -> None:
        for _ in left:
            out.append(await _submit(http, payload))

    await asyncio.gather(*(lane() for _ in range(concurrency)))
    return out


async def submit_open(
    http: httpx.AsyncClient, payload: Work, count: int, rate: float
) -> list[Submitted]:
    """``count`` submits started at a fixed ``rate`` per second, whatever the answers."""
    start = time.monotonic()
    tasks = []
    for i in range(count):
        delay = start + i / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(_submit(http, payload)))
    return list(await asyncio.gather(*tasks))


async def wait_finished(db: asyncpg.Connection, ids: list[str], within: float) -> None:
    deadline = time.monotonic() + within
    while True:
        done = await db.fetchval(
            "SELECT count(*) FROM jobs WHERE job_id = ANY($1::uuid[])"
            " AND status IN ('completed', 'failed')",
            ids,
        )
        if done >= len(ids):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{done} of {len(ids)} jobs finished after {within:.0f} s")
        await asyncio.sleep(0.1)


async def phase_figures(db: asyncpg.Connection, submits: list[Submitted]) -> Phase:
    """Throughput and latencies of one phase, from the job rows."""
    rows = {
        str(r["job_id"]): r
        for r in await db.fetch(
            "SELECT job_id, status, created_at, updated_at FROM jobs WHERE job_id = ANY($1::uuid[])",
            [s.job_id for s in submits],
        )
    }
    e2e, in_system, http = [], [], []
    failed = 0
    for submit in submits:
        row = rows[submit.job_id]
        if row["status"] != "completed":
            failed += 1
            continue
        finished = row["updated_at"].timestamp()
        e2e.append(finished - submit.started)
        in_system.append(finished - row["created_at"].timestamp())
        http.append(submit.answered - submit.started)
    first = min(s.started for s in submits)
    last_done = max(r["updated_at"].timestamp() for r in rows.values())
    last_answer = max(s.answered for s in submits)
    return Phase(
        jobs=len(submits),
        failed=failed,
        seconds=last_done - first,
        jobs_per_s=len(submits) / (last_done - first),
        submits_per_s=len(submits) / (last_answer - first),
        e2e=percentiles(e2e),
        row=percentiles(in_system),
        http=percentiles(http),
    )


def _py_spy(pid: int, out: Path) -> subprocess.Popen[bytes]:
    binary = Path(sys.executable).with_name("py-spy")
    return subprocess.Popen(
        [
            str(binary),
            "record",
            "--pid",
            str(pid),
            "--rate",
            "200",
            "--format",
            "raw",
            "--output",
            str(out),
            "--nonblocking",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _videoq_processes(bench: BenchStack) -> Callable[[], dict[str, list[int]]]:
    def processes() -> dict[str, list[int]]:
        return {
            "api": [bench.pid("api")],
            "worker": [bench.pid(w) for w in bench.workers],
            "janitor": [bench.pid("janitor")],
        }

    return processes


async def _process_ids(
    services: dict[str, list[int]], db: asyncpg.Connection, s3_pid: int | None
) -> dict[str, list[int]]:
    """The processes whose CPU a job costs, by component: the service's own
    (``services``), then the servers'."""
    pids = {
        **services,
        "postgres (this database's backends)": [
            r["pid"]
            for r in await db.fetch(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                " AND pid <> pg_backend_pid()"
            )
        ],
        "rabbitmq (whole node, shared)": [
            p.pid for p in psutil.process_iter(["name"]) if p.info["name"] == "beam.smp"
        ],
    }
    if s3_pid is not None:
        pids["S3 server"] = [s3_pid]
    return pids


@dataclass
class Videoq:
    """One stack (videoq's, or the peer's), up and warmed, and what its phases measured."""

    #: The service's processes by component (asked again at each measurement).
    processes: Callable[[], dict[str, list[int]]]
    db: asyncpg.Connection
    http: httpx.AsyncClient
    s3_pid: int | None
    #: videoq's stack (None for the peer).
    bench: BenchStack | None = None
    light: list[Submitted] = field(default_factory=list)
    heavy: list[list[Submitted]] = field(default_factory=list)
    cpu_ms: dict[str, float] = field(default_factory=dict)

    async def light_block(self, payload: Work, count: int, rate: float) -> None:
        submits = await submit_open(self.http, payload, count, rate)
        await wait_finished(self.db, [s.job_id for s in submits], 120)
        self.light += submits

    async def heavy_block(self, payload: Work, count: int, concurrency: int) -> None:
        meter = CpuMeter(await _process_ids(self.processes(), self.db, self.s3_pid))
        submits = await submit_closed(self.http, payload, count, concurrency)
        await wait_finished(self.db, [s.job_id for s in submits], 60 + count)
        cpu = meter.per_job(await _process_ids(self.processes(), self.db, self.s3_pid), 1)
        for name, ms in cpu.items():
            self.cpu_ms[name] = self.cpu_ms.get(name, 0.0) + ms
        self.heavy.append(submits)

    async def figures(self) -> VideoqRun:
        blocks = [await phase_figures(self.db, block) for block in self.heavy]
        heavy = await phase_figures(self.db, [s for block in self.heavy for s in block])
        jobs = sum(b.jobs for b in blocks)
        seconds = sum(b.seconds for b in blocks)
        # Throughput over the blocks' own durations (not the gaps between them).
        heavy = dataclasses.replace(
            heavy,
            seconds=seconds,
            jobs_per_s=jobs / seconds,
            submits_per_s=jobs / sum(b.jobs / b.submits_per_s for b in blocks),
        )
        return VideoqRun(
            light=await phase_figures(self.db, self.light),
            throughput=heavy,
            cpu_ms_per_job={k: v / jobs for k, v in self.cpu_ms.items()},
        )


@contextlib.asynccontextmanager
async def videoq_stack(
    s3: str,
    payload: Work,
    args: argparse.Namespace,
    *,
    trace: Path | None,
    s3_pid: int | None,
    code: Code = CHECKOUT,
) -> AsyncIterator[Videoq]:
    """A fresh stack (api, workers, janitor) on a fresh vhost, database and
    bucket, warmed up; under ``bench.trace`` when ``trace`` names a folder;
    running ``code``."""
    async with fresh_stack(s3, code=code) as bench:
        if trace is None and (args.whatif or args.baseline):
            trace = bench.logs  # the what-if pair: both stacks under the tracer
        if trace:
            trace.mkdir(parents=True, exist_ok=True)
        url = bench.start_api(trace=trace / "api.json" if trace else None)
        bench.start_workers(
            args.workers,
            trace=trace / "worker.json" if trace else None,
            VIDEOQ_WORKER_CONCURRENCY=str(args.worker_concurrency),
        )
        bench.stack.start_janitor()
        await wait_for_consumers(bench.amqp_url, bench.settings.queue_process, args.workers)
        db = await asyncpg.connect(bench.database_url)
        limits = httpx.Limits(
            max_connections=args.concurrency, max_keepalive_connections=args.concurrency
        )
        try:
            async with httpx.AsyncClient(base_url=url, limits=limits, timeout=120) as http:
                warm = await submit_closed(http, payload, args.warmup, min(4, args.concurrency))
                await wait_finished(db, [w.job_id for w in warm], 60)
                yield Videoq(_videoq_processes(bench), db, http, s3_pid, bench)
        finally:
            await db.close()


async def videoq_round(
    s3: str, payload: Work, args: argparse.Namespace, *, first: bool, s3_pid: int | None
) -> VideoqRun:
    """One stack: the light-load phase, then the throughput phase."""
    trace = args.trace if first else None
    async with videoq_stack(s3, payload, args, trace=trace, s3_pid=s3_pid) as vq:
        await vq.light_block(payload, args.light_jobs, args.light_rate)
        profile = args.profile if first else None
        assert vq.bench is not None
        spies = _start_profile(vq.bench, profile) if profile else []
        await vq.heavy_block(payload, args.jobs, args.concurrency)
        for spy in spies:
            spy.send_signal(signal.SIGINT)
        for spy in spies:
            spy.wait(timeout=60)
        return await vq.figures()


async def videoq_pair_round(
    s3: str, payload: Work, args: argparse.Namespace, *, s3_pid: int | None
) -> tuple[VideoqRun, VideoqRun]:
    """The plain stack and the patched one (``--whatif``), both up at once,
    both under ``bench.trace``, measured in alternating blocks (plain,
    patched, plain, ...), so a change in the machine's load hits both alike."""
    plain_code, patched_code = Code(source=args.baseline_tree), Code(whatif=args.whatif)
    async with (
        videoq_stack(s3, payload, args, trace=None, s3_pid=s3_pid, code=plain_code) as plain,
        videoq_stack(s3, payload, args, trace=None, s3_pid=s3_pid, code=patched_code) as patched,
    ):
        # Both under the tracer (only the second patched): same wrappers.
        for _ in range(args.blocks):
            for vq in (plain, patched):
                await vq.light_block(payload, args.light_jobs // args.blocks, args.light_rate)
        for _ in range(args.blocks):
            for vq in (plain, patched):
                await vq.heavy_block(payload, args.jobs // args.blocks, args.concurrency)
        figures = await plain.figures(), await patched.figures()
    # The services wrote their step timings as they stopped.
    for vq, got in zip((plain, patched), figures, strict=True):
        assert vq.bench is not None
        got.steps = {
            name: json.loads((vq.bench.logs / f"{name}.json").read_text())
            for name in ("api", "worker")
            if (vq.bench.logs / f"{name}.json").exists()
        }
    return figures


def peer_pool_size(args: argparse.Namespace) -> int:
    """The peer worker's ``-c``: its processes, or with the threads pool its threads."""
    if args.peer_pool == "threads" and args.peer_threads:
        return int(args.peer_threads)
    return int(args.workers)


async def peer_round(
    s3: str, payload: Work, args: argparse.Namespace, *, s3_pid: int | None
) -> VideoqRun:
    """The peer (``bench/peer/``) under the same load: its api, and one
    Celery worker with ``--workers`` pool processes."""
    from bench.peer.stack import peer_stack

    async with peer_stack(s3) as peer:
        url = peer.start_api()
        await peer.start_worker(peer_pool_size(args), pool=args.peer_pool)
        db = await asyncpg.connect(peer.database_url)
        limits = httpx.Limits(
            max_connections=args.concurrency, max_keepalive_connections=args.concurrency
        )

        def processes() -> dict[str, list[int]]:
            return {"api": peer.pids("api"), "worker": peer.pids("worker"), "janitor": []}

        try:
            async with httpx.AsyncClient(base_url=url, limits=limits, timeout=120) as http:
                warm = await submit_closed(http, payload, args.warmup, min(4, args.concurrency))
                await wait_finished(db, [w.job_id for w in warm], 60)
                vq = Videoq(processes, db, http, s3_pid)
                await vq.light_block(payload, args.light_jobs, args.light_rate)
                await vq.heavy_block(payload, args.jobs, args.concurrency)
                return await vq.figures()
        finally:
            await db.close()


def _start_profile(bench: BenchStack, profile: Path) -> list[subprocess.Popen[bytes]]:
    profile.mkdir(parents=True, exist_ok=True)
    return [
        _py_spy(bench.pid("api"), profile / "api.txt"),
        _py_spy(bench.pid(bench.workers[0]), profile / "worker.txt"),
    ]


# --- the run ---------------------------------------------------------------------------------


async def _baselines(
    services: Services, args: argparse.Namespace, celery_variants: list[tuple[str, bool]]
) -> dict[str, BaselineRun]:
    out: dict[str, BaselineRun] = {}
    for queue_type, confirm in celery_variants:
        name = f"celery {queue_type}{' +confirms' if confirm else ''}"
        out[name] = await retrying(
            name,
            functools.partial(
                celery_round, services, args.jobs, queue_type=queue_type, confirm=confirm
            ),
        )
        show([out[name].row(name)])
    for queue_type in ["quorum"] if args.quick else ["classic", "quorum"]:
        name = f"aio-pika {queue_type}"
        out[name] = await retrying(
            name,
            functools.partial(
                aiopika_round,
                services,
                args.jobs,
                queue_type=queue_type,
                concurrency=args.concurrency,
            ),
        )
        show([out[name].row(name)])
    return out


async def _peer(s3: str, payload: Work, args: argparse.Namespace, s3_pid: int | None) -> VideoqRun:
    run = await retrying("peer", functools.partial(peer_round, s3, payload, args, s3_pid=s3_pid))
    show(VideoqFigures.of(run).rows("peer", args.light_rate))
    return run


async def run(args: argparse.Namespace) -> dict[str, Any]:
    services = bench_services()
    info = describe(services)
    print_description(info)
    clip = tiny_mp4() if args.pipeline == PIPELINE else small_clip()
    payload = Work(clip.read_bytes(), args.pipeline, args.frame_stride)
    pair = pair_label(args.whatif, args.baseline) if args.whatif or args.baseline else ""
    stride = f" stride {args.frame_stride}" if args.frame_stride != 1 else ""
    print(
        f"videoq: {args.jobs} jobs ({args.pipeline}{stride} pipeline, {len(payload.clip)} B MP4),"
        f" {args.workers}"
        f" worker process(es) x {args.worker_concurrency} job(s) at once,"
        f" {args.concurrency} submits in flight{'; what-if: ' + pair if pair else ''};"
        f" light load: {args.light_jobs} jobs at {args.light_rate:g}/s;"
        f" {args.repeat} round(s), medians reported",
        flush=True,
    )
    celery_variants = [("quorum", True)] if args.quick else [("classic", False), ("quorum", True)]
    if importlib.util.find_spec("celery") is None:
        print("  (Celery is not installed: pip install celery, or the bench extra; no Celery rows)")
        celery_variants = []
    with_peer = bool(celery_variants) and not pair and not args.no_peer
    if with_peer:
        print(
            f"peer (bench/peer/, FastAPI + Celery): the same jobs and load, one Celery worker"
            f" with {peer_pool_size(args)} {args.peer_pool}"
            f" {'thread(s) in one process' if args.peer_pool == 'threads' else 'process(es)'};"
            " videoq and the peer alternate which goes first in each round",
            flush=True,
        )
    rounds: list[Round] = []
    peer: VideoqRun | None
    with s3_endpoint() as (s3, s3_pid):
        services.s3_endpoint = s3
        for number in range(args.repeat):
            started_at = load_average()
            print(f"round {number + 1}/{args.repeat} (load {' '.join(map(str, started_at))})")
            if pair:
                vq, patched = await retrying(
                    "videoq pair", lambda: videoq_pair_round(s3, payload, args, s3_pid=s3_pid)
                )
                show(VideoqFigures.of(vq).rows("videoq", args.light_rate))
                show(VideoqFigures.of(patched).rows("what-if", args.light_rate))
                peer = None
            else:
                patched = None
                peer = None
                peer_first = with_peer and number % 2 == 1
                if peer_first:
                    peer = await _peer(s3, payload, args, s3_pid)
                vq = await retrying(
                    "videoq",
                    functools.partial(
                        videoq_round, s3, payload, args, first=number == 0, s3_pid=s3_pid
                    ),
                )
                show(VideoqFigures.of(vq).rows("videoq", args.light_rate))
                if with_peer and not peer_first:
                    peer = await _peer(s3, payload, args, s3_pid)
            baselines = await _baselines(services, args, celery_variants)
            rounds.append(Round(started_at, vq, patched, peer, baselines))
    return summarise(args, info, rounds)


def summarise(
    args: argparse.Namespace, info: dict[str, Any], rounds: list[Round]
) -> dict[str, Any]:
    plain = VideoqFigures.median_of([r.videoq for r in rounds])
    rows = plain.rows("videoq", args.light_rate)
    summary: dict[str, Any] = {**plain.summary(), "baselines": {}, "ratios": {}}
    whatifs = [r.whatif for r in rounds if r.whatif is not None]
    if whatifs:
        patched = VideoqFigures.median_of(whatifs)
        speedup = median(
            [
                r.whatif.throughput.jobs_per_s / r.videoq.throughput.jobs_per_s
                for r in rounds
                if r.whatif
            ]
        )
        label = pair_label(args.whatif, args.baseline)
        summary["whatif"] = {"patches": label, **patched.summary(), "throughput_x_plain": speedup}
        rows += patched.rows("what-if", args.light_rate)
        rows.append(Row(f"what-if ({label}): throughput", speedup, "x plain"))
    peers = [r.peer for r in rounds if r.peer is not None]
    if peers:
        peer = VideoqFigures.median_of(peers)
        rows += peer.rows("peer", args.light_rate)
        ratio = median(
            [
                r.videoq.throughput.jobs_per_s / r.peer.throughput.jobs_per_s
                for r in rounds
                if r.peer
            ]
        )
        rows.append(Row("videoq / peer: throughput", ratio, "x (median of the rounds' ratios)"))
        summary["peer"] = {k.removeprefix("videoq_"): v for k, v in peer.summary().items()}
        summary["ratios"]["peer"] = ratio
    for name in rounds[0].baselines:
        baseline = BaselineRun.median_of([r.baselines[name] for r in rounds])
        ratio = median([r.videoq.throughput.jobs_per_s / r.baselines[name].per_s for r in rounds])
        rows.append(baseline.row(name, f"videoq = {ratio:.2f}x"))
        summary["baselines"][name] = {"per_s": baseline.per_s, "latency": baseline.latency}
        summary["ratios"][name] = ratio
    show(rows, f"median of {len(rounds)} round(s):")
    targets = []
    if peers:
        # Issue 17: twice the peer's throughput, and no worse latency.
        ratio = summary["ratios"]["peer"]
        targets.append(Target("jobs/s >= 2x the peer's", f"{ratio:.2f}x", ratio >= 2))
        ours, theirs = plain.light_e2e.p50, peer.light_e2e.p50
        targets.append(
            Target(
                "p50 submit->completed at light load <= the peer's",
                f"{ours * 1e3:.1f} ms against {theirs * 1e3:.1f} ms",
                ours <= theirs,
            )
        )
    p50 = plain.light_e2e.p50
    targets.append(
        Target("p50 submit->completed < 50 ms at light load", f"{p50 * 1e3:.1f} ms", p50 < 0.05)
    )
    show(targets, "targets:")
    if args.profile:
        from bench.hotspots import summarise as profile_summary

        for name in ("api", "worker"):
            path = args.profile / f"{name}.txt"
            if path.exists():
                print(f"\nwhere the {name}'s time goes (py-spy, throughput phase of round 1):")
                profile_summary(path)
    steps = print_trace(args.trace) if args.trace else None
    return figures_document(
        "queue",
        args,
        info,
        steps=steps,
        summary=summary,
        rounds=[r.as_json() for r in rounds],
    )


def print_trace(folder: Path) -> dict[str, Any]:
    """Each step's mean time and its time per job, from ``bench.trace``'s output."""
    steps: dict[str, Any] = {}
    for name in ("api", "worker"):
        path = folder / f"{name}.json"
        if not path.exists():
            continue
        data = json.loads(path.read_text())
        jobs = (data.get("db.create") if name == "api" else data.get("db.claim")) or {"count": 1}
        count = jobs["count"]
        show(
            [
                Row(
                    label,
                    f["total"] / count * 1e3,
                    "ms/job",
                    note=f"{f['count'] / count:.2f} calls/job, mean {f['mean'] * 1e3:.2f} ms",
                )
                for label, f in sorted(data.items(), key=lambda kv: -kv[1]["total"])
            ],
            f"{name}: wall-clock time per step (round 1, {count} jobs, every phase):",
        )
        steps[name] = data
    return steps


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.queue_overhead", description=(__doc__ or "").split("\n\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes (for CI)")
    parser.add_argument("--jobs", type=int, help="jobs (and baseline messages) per round")
    parser.add_argument("--workers", type=int, default=1, help="videoq worker processes")
    parser.add_argument(
        "--worker-concurrency",
        type=int,
        default=1,
        help="VIDEOQ_WORKER_CONCURRENCY of each worker (jobs one process runs at once)",
    )
    parser.add_argument("--concurrency", type=int, default=16, help="submits in flight")
    parser.add_argument(
        "--pipeline",
        default=PIPELINE,
        help=f"the pipeline every job runs ({PIPELINE}: a 64x48 clip of 5 frames;"
        " any other: a 160x90 clip of 20 frames)",
    )
    parser.add_argument("--frame-stride", type=int, default=1, help="the jobs' frame_stride")
    parser.add_argument("--no-peer", action="store_true", help="leave the peer out")
    parser.add_argument(
        "--peer-pool",
        choices=["prefork", "solo", "threads"],
        default="prefork",
        help="the Celery pool of the peer's worker (its processes: --workers)",
    )
    parser.add_argument(
        "--peer-threads",
        type=int,
        help="with --peer-pool threads: tasks the peer's one process runs at once"
        " (default --workers), the peer's counterpart of --worker-concurrency",
    )
    parser.add_argument("--light-jobs", type=int, help="jobs in the light-load phase")
    parser.add_argument("--light-rate", type=float, default=5.0, help="light-load submits/s")
    parser.add_argument("--repeat", type=int, help="rounds (the median is reported)")
    parser.add_argument("--profile", type=Path, help="py-spy the api and worker into this folder")
    parser.add_argument(
        "--trace", type=Path, help="time each step of the api and worker (round 1) into this folder"
    )
    parser.add_argument(
        "--blocks",
        type=int,
        default=4,
        help="with --whatif: alternating blocks per phase (plain, patched, plain, ...)",
    )
    parser.add_argument(
        "--whatif",
        default="",
        help="proposed optimisations to patch into the services, comma-separated"
        " (see bench/trace.py)",
    )
    parser.add_argument(
        "--baseline",
        help="a git revision: measure its code as the plain stack beside this checkout's",
    )
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args(argv)
    if args.whatif and args.baseline:
        parser.error("--whatif and --baseline are exclusive")
    if args.peer_threads and args.peer_pool != "threads":
        parser.error("--peer-threads needs --peer-pool threads")
    args.jobs = args.jobs or (20 if args.quick else 2000)
    args.light_jobs = args.light_jobs or (5 if args.quick else 100)
    args.repeat = args.repeat or (1 if args.quick else 3)
    args.warmup = 3 if args.quick else WARMUP
    if args.quick:
        args.light_rate = max(args.light_rate, 10.0)
    default_s3_credentials()
    with source_tree(args.baseline) as args.baseline_tree:
        write_json(args.json, asyncio.run(run(args)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
