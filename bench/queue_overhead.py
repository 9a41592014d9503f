"""Benchmark: queue overhead, end to end, against bare Celery and bare aio-pika.

    python bench/queue.py [--quick] [--jobs N] [--workers W] [--worker-concurrency K]
                          [--repeat R] [--concurrency C] [--light-jobs M] [--light-rate HZ]
                          [--profile DIR] [--trace DIR] [--whatif PATCHES | --baseline REV]
                          [--json PATH]

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
2. **Celery**: a no-op task (acks_late, persistent, no result backend,
   prefetch 1) published N times from this process, one prefork worker
   process (``-c 1``); on a classic queue with Celery's defaults, and on a
   quorum queue with publisher confirms (what videoq guarantees).
3. **aio-pika**: N persistent messages published with confirms (C in
   flight) and consumed by a separate process (prefetch 1, one ack each):
   the broker's own rate for the same scheme, on a classic and a quorum queue.

Prints jobs/s (messages/s), latencies, the CPU each component spent per job
(api, workers, janitor, this database's PostgreSQL backends, RabbitMQ, moto),
and the ratios videoq / Celery and videoq / aio-pika.

Finding where the time goes: ``--profile DIR`` records the api and the worker
with py-spy during the first round's throughput phase and prints a summary
(``bench/hotspots.py``); ``--trace DIR`` runs them under ``bench/trace.py``
and prints the wall-clock time of each step per job; ``--whatif PATCHES``
runs, in each round, a second videoq with proposed optimisations patched in
at start-up (see ``bench/trace.py``), so
their effect is measured in the same run, before anyone changes the code.
``--baseline REV`` does the same with the code of git revision REV (extracted
with ``git archive``) as the plain stack and this checkout as the patched
one: what a series of commits changed, measured side by side.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path, where this
# module would shadow the standard library's ``queue``: put the repo there.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse
import asyncio
import contextlib
import importlib.util
import json
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aio_pika
import asyncpg
import httpx
import psutil

from bench.common import (
    REPO,
    BenchStack,
    CpuMeter,
    Percentiles,
    bench_services,
    cache_dir,
    fresh_stack,
    load_average,
    machine,
    median,
    median_percentiles,
    pair_label,
    percentiles,
    print_machine,
    retrying,
    s3_endpoint,
    services_from,
    source_tree,
    submit_clip,
    tiny_mp4,
    wait_for_consumers,
    write_json,
)
from tests.support.services import Services, drop_vhost, new_vhost

PIPELINE = "noop"
WARMUP = 10


# --- videoq ------------------------------------------------------------------------


async def _submit(http: httpx.AsyncClient, payload: bytes) -> tuple[str, float, float]:
    started = time.time()
    job_id = await submit_clip(http, payload, pipeline=PIPELINE)
    return job_id, started, time.time()


async def submit_closed(
    http: httpx.AsyncClient, payload: bytes, count: int, concurrency: int
) -> list[tuple[str, float, float]]:
    """``count`` submits with ``concurrency`` in flight."""
    out: list[tuple[str, float, float]] = []
    left = iter(range(count))

    async def lane() -> None:
        for _ in left:
            out.append(await _submit(http, payload))

    await asyncio.gather(*(lane() for _ in range(concurrency)))
    return out


async def submit_open(
    http: httpx.AsyncClient, payload: bytes, count: int, rate: float
) -> list[tuple[str, float, float]]:
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


async def phase_figures(
    db: asyncpg.Connection, submits: list[tuple[str, float, float]]
) -> dict[str, Any]:
    """Throughput and latencies of one phase, from the job rows."""
    rows = {
        str(r["job_id"]): r
        for r in await db.fetch(
            "SELECT job_id, status, created_at, updated_at FROM jobs WHERE job_id = ANY($1::uuid[])",
            [s[0] for s in submits],
        )
    }
    e2e, in_system, http = [], [], []
    failed = 0
    for job_id, started, answered in submits:
        row = rows[job_id]
        if row["status"] != "completed":
            failed += 1
            continue
        finished = row["updated_at"].timestamp()
        e2e.append(finished - started)
        in_system.append(finished - row["created_at"].timestamp())
        http.append(answered - started)
    first = min(s[1] for s in submits)
    last_done = max(r["updated_at"].timestamp() for r in rows.values())
    last_answer = max(s[2] for s in submits)
    return {
        "jobs": len(submits),
        "failed": failed,
        "seconds": last_done - first,
        "jobs_per_s": len(submits) / (last_done - first),
        "submits_per_s": len(submits) / (last_answer - first),
        "e2e": percentiles(e2e),
        "row": percentiles(in_system),
        "http": percentiles(http),
    }


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


async def _process_ids(
    bench: BenchStack, db: asyncpg.Connection, moto: int | None
) -> dict[str, list[int]]:
    """The processes whose CPU a job costs, by component."""
    pids = {
        "api": [bench.pid("api")],
        "worker": [bench.pid(w) for w in bench.workers],
        "janitor": [bench.pid("janitor")],
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
    if moto is not None:
        pids["moto (S3)"] = [moto]
    return pids


@dataclass
class Videoq:
    """One videoq stack, up and warmed, and what its phases measured."""

    bench: BenchStack
    db: asyncpg.Connection
    http: httpx.AsyncClient
    moto: int | None
    light: list[tuple[str, float, float]] = field(default_factory=list)
    heavy: list[list[tuple[str, float, float]]] = field(default_factory=list)
    cpu_ms: dict[str, float] = field(default_factory=dict)

    async def light_block(self, payload: bytes, count: int, rate: float) -> None:
        submits = await submit_open(self.http, payload, count, rate)
        await wait_finished(self.db, [s[0] for s in submits], 120)
        self.light += submits

    async def heavy_block(self, payload: bytes, count: int, concurrency: int) -> None:
        meter = CpuMeter(await _process_ids(self.bench, self.db, self.moto))
        submits = await submit_closed(self.http, payload, count, concurrency)
        await wait_finished(self.db, [s[0] for s in submits], 60 + count)
        cpu = meter.per_job(await _process_ids(self.bench, self.db, self.moto), 1)
        for name, ms in cpu.items():
            self.cpu_ms[name] = self.cpu_ms.get(name, 0.0) + ms
        self.heavy.append(submits)

    async def figures(self) -> dict[str, Any]:
        blocks = [await phase_figures(self.db, block) for block in self.heavy]
        heavy = await phase_figures(self.db, [s for block in self.heavy for s in block])
        jobs = sum(b["jobs"] for b in blocks)
        heavy["seconds"] = sum(b["seconds"] for b in blocks)
        heavy["jobs_per_s"] = jobs / heavy["seconds"]
        heavy["submits_per_s"] = jobs / sum(b["jobs"] / b["submits_per_s"] for b in blocks)
        heavy["cpu_ms_per_job"] = {k: v / jobs for k, v in self.cpu_ms.items()}
        return {"light": await phase_figures(self.db, self.light), "throughput": heavy}


@contextlib.asynccontextmanager
async def videoq_stack(
    s3: str,
    payload: bytes,
    args: argparse.Namespace,
    *,
    trace: Path | None,
    moto: int | None,
    whatif: str = "",
    source: Path | None = None,
) -> AsyncIterator[Videoq]:
    """A fresh stack (api, workers, janitor) on a fresh vhost, database and
    bucket, warmed up; under ``bench.trace`` when ``trace`` names a folder;
    running the code in ``source`` (a source tree) instead of this checkout's."""
    async with fresh_stack(s3) as bench:
        if trace is None and (args.whatif or args.baseline):
            trace = bench.logs  # the what-if pair: both stacks under the tracer
        if trace:
            trace.mkdir(parents=True, exist_ok=True)
        with services_from(bench, source=source, whatif=whatif):
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
                await wait_finished(db, [w[0] for w in warm], 60)
                yield Videoq(bench, db, http, moto)
        finally:
            await db.close()


async def videoq_round(
    s3: str, payload: bytes, args: argparse.Namespace, *, first: bool, moto: int | None
) -> dict[str, Any]:
    """One stack: the light-load phase, then the throughput phase."""
    trace = args.trace if first else None
    async with videoq_stack(s3, payload, args, trace=trace, moto=moto) as vq:
        await vq.light_block(payload, args.light_jobs, args.light_rate)
        profile = args.profile if first else None
        spies = _start_profile(vq.bench, profile) if profile else []
        await vq.heavy_block(payload, args.jobs, args.concurrency)
        for spy in spies:
            spy.send_signal(signal.SIGINT)
        for spy in spies:
            spy.wait(timeout=60)
        return await vq.figures()


async def videoq_pair_round(
    s3: str, payload: bytes, args: argparse.Namespace, *, moto: int | None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The plain stack and the patched one (``--whatif``), both up at once,
    both under ``bench.trace``, measured in alternating blocks (plain,
    patched, plain, ...), so a change in the machine's load hits both alike."""
    async with (
        videoq_stack(s3, payload, args, trace=None, moto=moto, source=args.baseline_tree) as plain,
        videoq_stack(s3, payload, args, trace=None, moto=moto, whatif=args.whatif) as patched,
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
        got["steps"] = {
            name: json.loads((vq.bench.logs / f"{name}.json").read_text())
            for name in ("api", "worker")
            if (vq.bench.logs / f"{name}.json").exists()
        }
    return figures


def _start_profile(bench: BenchStack, profile: Path) -> list[subprocess.Popen[bytes]]:
    profile.mkdir(parents=True, exist_ok=True)
    return [
        _py_spy(bench.pid("api"), profile / "api.txt"),
        _py_spy(bench.pid(bench.workers[0]), profile / "worker.txt"),
    ]


# --- Celery ---------------------------------------------------------------------------


def _start_celery_worker(env: dict[str, str], log: Path, queue: str) -> subprocess.Popen[bytes]:
    """One Celery worker process (prefork, one child: Celery's default pool)."""
    with log.open("wb") as out:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "bench.celery_app",
                "worker",
                "-c",
                "1",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "-l",
                "WARNING",
                "-Q",
                queue,
            ],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


async def celery_round(
    services: Services, count: int, *, queue_type: str, confirm: bool
) -> dict[str, Any]:
    from bench.celery_app import QUEUE, make_app

    vhost, url = new_vhost(services)
    tmp = Path(tempfile.mkdtemp(prefix="videoq-bench-celery-"))
    done = tmp / "done.json"
    env = dict(os.environ)
    env.update(
        BENCH_CELERY_BROKER=url,
        BENCH_CELERY_QUEUE_TYPE=queue_type,
        BENCH_CELERY_CONFIRM="1" if confirm else "0",
        BENCH_CELERY_EXPECT=str(count),
        BENCH_CELERY_DONE=str(done),
    )
    worker = _start_celery_worker(env, tmp / "worker.log", QUEUE)
    try:
        await wait_for_consumers(url, QUEUE, 1)
        app = make_app(url, queue_type=queue_type, confirm=confirm)

        def publish() -> float:
            first = time.time()
            with app.producer_or_acquire() as producer:
                for _ in range(count):
                    app.send_task("bench.noop", args=(time.time(),), producer=producer)
            return first

        first = await asyncio.to_thread(publish)
        deadline = time.monotonic() + 60 + count / 10
        while not done.exists():
            if worker.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"celery worker: {(tmp / 'worker.log').read_text()[-2000:]}")
            await asyncio.sleep(0.02)
        result = json.loads(done.read_text())
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
        drop_vhost(services, vhost)
    seconds = result["done_at"] - first
    return {
        "messages": count,
        "seconds": seconds,
        "per_s": count / seconds,
        "latency": percentiles(result["latencies"]),
    }


# --- bare aio-pika ------------------------------------------------------------------------


async def consume_only(url: str, queue: str, count: int, prefetch: int) -> None:
    """The consumer process of the aio-pika loop: prints its figures as JSON."""
    connection = await aio_pika.connect(url)
    latencies: list[float] = []
    finished = asyncio.Event()
    async with connection:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=prefetch)
        declared = await channel.get_queue(queue, ensure=False)

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            latencies.append(time.time() - json.loads(message.body)["sent_at"])
            await message.ack()
            if len(latencies) == count:
                finished.set()

        await declared.consume(on_message)
        await finished.wait()
        print(json.dumps({"done_at": time.time(), "latencies": latencies}), flush=True)


async def aiopika_round(
    services: Services, count: int, *, queue_type: str, concurrency: int, prefetch: int = 1
) -> dict[str, Any]:
    vhost, url = new_vhost(services)
    queue = "bench.pika"
    try:
        connection = await aio_pika.connect(url)
        async with connection:
            channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
            arguments = {"x-queue-type": "quorum"} if queue_type == "quorum" else {}
            await channel.declare_queue(queue, durable=True, arguments=arguments)
            consumer = await asyncio.create_subprocess_exec(
                sys.executable,
                str(Path(__file__).resolve()),
                "--consume-only",
                url,
                queue,
                str(count),
                str(prefetch),
                stdout=asyncio.subprocess.PIPE,
                cwd=REPO,
            )
            await wait_for_consumers(url, queue, 1)
            left = iter(range(count))

            async def lane() -> None:
                for _ in left:
                    body = json.dumps({"sent_at": time.time()}).encode()
                    await channel.default_exchange.publish(
                        aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                        routing_key=queue,
                        mandatory=True,
                    )

            first = time.time()
            await asyncio.gather(*(lane() for _ in range(concurrency)))
            out, _ = await asyncio.wait_for(consumer.communicate(), 60 + count / 10)
            result = json.loads(out.decode().strip().splitlines()[-1])
    finally:
        drop_vhost(services, vhost)
    seconds = result["done_at"] - first
    return {
        "messages": count,
        "seconds": seconds,
        "per_s": count / seconds,
        "latency": percentiles(result["latencies"]),
    }


# --- the run ---------------------------------------------------------------------------------


def _row(name: str, rate: float, unit: str, latency: Percentiles | None, note: str = "") -> None:
    lat = f"  {latency.ms()}" if latency is not None else ""
    print(f"  {name:<38} {rate:8.1f} {unit}{lat}{note}", flush=True)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    services = bench_services()
    info = machine(services)
    print_machine(info)
    payload = tiny_mp4(cache_dir() / "tiny-64x48.mp4").read_bytes()
    print(
        f"videoq: {args.jobs} jobs ({PIPELINE} pipeline, {len(payload)} B MP4), {args.workers}"
        f" worker process(es) x {args.worker_concurrency} job(s) at once,"
        f" {args.concurrency} submits in flight{'; what-if: ' + pair_label(args.whatif, args.baseline) if args.whatif or args.baseline else ''}; light load: {args.light_jobs}"
        f" jobs at {args.light_rate:g}/s; {args.repeat} round(s), medians reported",
        flush=True,
    )
    celery_variants = [("quorum", True)] if args.quick else [("classic", False), ("quorum", True)]
    if importlib.util.find_spec("celery") is None:
        print("  (Celery is not installed: pip install celery, or the bench extra; no Celery rows)")
        celery_variants = []
    pika_variants = ["quorum"] if args.quick else ["classic", "quorum"]
    rounds: list[dict[str, Any]] = []
    with s3_endpoint() as (s3, moto_proc):
        services.s3_endpoint = s3
        moto = moto_proc.pid if moto_proc is not None else None
        for number in range(args.repeat):
            print(f"round {number + 1}/{args.repeat} (load {' '.join(map(str, load_average()))})")
            round_: dict[str, Any] = {"load_average": load_average()}
            if args.whatif or args.baseline:
                vq, patched = await retrying(
                    "videoq pair", lambda: videoq_pair_round(s3, payload, args, moto=moto)
                )
                round_["videoq"], round_["videoq what-if"] = vq, patched
                _print_videoq("videoq", vq, args)
                _print_videoq("what-if", patched, args)
            else:
                vq = await retrying(
                    "videoq",
                    lambda n=number: videoq_round(s3, payload, args, first=n == 0, moto=moto),
                )
                round_["videoq"] = vq
                _print_videoq("videoq", vq, args)
            for queue_type, confirm in celery_variants:
                name = f"celery {queue_type}{' +confirms' if confirm else ''}"
                got = await retrying(
                    name,
                    lambda q=queue_type, c=confirm: celery_round(
                        services, args.jobs, queue_type=q, confirm=c
                    ),
                )
                round_[name] = got
                _row(name, got["per_s"], "tasks/s", got["latency"])
            for queue_type in pika_variants:
                name = f"aio-pika {queue_type}"
                got = await retrying(
                    name,
                    lambda q=queue_type: aiopika_round(
                        services, args.jobs, queue_type=q, concurrency=args.concurrency
                    ),
                )
                round_[name] = got
                _row(name, got["per_s"], "msgs/s", got["latency"])
            rounds.append(round_)
    return summarise(args, info, rounds)


def _videoq_summary(
    key: str, rounds: list[dict[str, Any]], args: argparse.Namespace
) -> dict[str, Any]:
    """Medians of one videoq variant's figures over the rounds."""
    tp = median([r[key]["throughput"]["jobs_per_s"] for r in rounds])
    light = median_percentiles([r[key]["light"]["e2e"] for r in rounds])
    light_row = median_percentiles([r[key]["light"]["row"] for r in rounds])
    light_http = median_percentiles([r[key]["light"]["http"] for r in rounds])
    heavy = median_percentiles([r[key]["throughput"]["e2e"] for r in rounds])
    submits = median([r[key]["throughput"]["submits_per_s"] for r in rounds])
    name = "what-if" if key.endswith("what-if") else "videoq"
    _row(f"{name} light load: submit->completed", args.light_rate, "jobs/s", light)
    _row(f"{name} light load: row created->done", args.light_rate, "jobs/s", light_row)
    _row(f"{name} light load: HTTP submit", args.light_rate, "jobs/s", light_http)
    _row(
        f"{name} throughput: submit->completed", tp, "jobs/s", heavy, f"  (submits {submits:.0f}/s)"
    )
    cpu = {
        part: median([r[key]["throughput"]["cpu_ms_per_job"][part] for r in rounds])
        for part in rounds[0][key]["throughput"]["cpu_ms_per_job"]
    }
    print("    CPU per job: " + ", ".join(f"{k} {v:.1f} ms" for k, v in cpu.items()))
    return {
        "videoq_cpu_ms_per_job": cpu,
        "videoq_jobs_per_s": tp,
        "videoq_submits_per_s": submits,
        "videoq_light_e2e": light.as_dict(),
        "videoq_light_row": light_row.as_dict(),
        "videoq_light_http": light_http.as_dict(),
        "videoq_throughput_e2e": heavy.as_dict(),
    }


def _print_videoq(name: str, vq: dict[str, Any], args: argparse.Namespace) -> None:
    light, heavy = vq["light"], vq["throughput"]
    _row(f"{name} light load: submit->completed", args.light_rate, "jobs/s", light["e2e"])
    _row(f"{name} light load: row created->done", args.light_rate, "jobs/s", light["row"])
    _row(f"{name} light load: HTTP submit", args.light_rate, "jobs/s", light["http"])
    _row(
        f"{name} throughput: submit->completed",
        heavy["jobs_per_s"],
        "jobs/s",
        heavy["e2e"],
        f"  (submits {heavy['submits_per_s']:.0f}/s, failed {heavy['failed']})",
    )
    print(
        "    CPU per job: "
        + ", ".join(f"{k} {v:.1f} ms" for k, v in heavy["cpu_ms_per_job"].items()),
        flush=True,
    )


def summarise(
    args: argparse.Namespace, info: dict[str, Any], rounds: list[dict[str, Any]]
) -> dict[str, Any]:
    baselines = [k for k in rounds[0] if k.startswith(("celery", "aio-pika"))]
    print(f"\nmedian of {len(rounds)} round(s):")
    summary: dict[str, Any] = _videoq_summary("videoq", rounds, args)
    light = Percentiles(**{k: v for k, v in summary["videoq_light_e2e"].items()})
    summary.update(baselines={}, ratios={})
    if "videoq what-if" in rounds[0]:
        patched = _videoq_summary("videoq what-if", rounds, args)
        summary["whatif"] = {"patches": pair_label(args.whatif, args.baseline), **patched}
        speedup = median(
            [
                r["videoq what-if"]["throughput"]["jobs_per_s"]
                / r["videoq"]["throughput"]["jobs_per_s"]
                for r in rounds
            ]
        )
        summary["whatif"]["throughput_x_plain"] = speedup
        print(
            f"    what-if ({pair_label(args.whatif, args.baseline)}): throughput {speedup:.2f}x plain videoq"
        )
    for name in baselines:
        rate = median([r[name]["per_s"] for r in rounds])
        ratio = median([r["videoq"]["throughput"]["jobs_per_s"] / r[name]["per_s"] for r in rounds])
        lat = median_percentiles([r[name]["latency"] for r in rounds])
        unit = "tasks/s" if name.startswith("celery") else "msgs/s"
        _row(name, rate, unit, lat, f"  videoq = {ratio:.2f}x")
        summary["baselines"][name] = {"per_s": rate, "latency": lat.as_dict()}
        summary["ratios"][name] = ratio
    celery = [v for k, v in summary["ratios"].items() if k.startswith("celery")]
    print("\ntargets:")
    if celery:
        worst = min(celery)
        print(
            f"  jobs/s >= 0.5x bare Celery (the faster variant): {worst:.2f}x  {_mark(worst >= 0.5)}"
        )
    print(
        f"  p50 submit->completed < 50 ms at light load: {light.p50 * 1e3:.1f} ms  {_mark(light.p50 < 0.05)}"
    )
    if args.profile:
        from bench.hotspots import summarise as profile_summary

        for name in ("api", "worker"):
            path = args.profile / f"{name}.txt"
            if path.exists():
                print(f"\nwhere the {name}'s time goes (py-spy, throughput phase of round 1):")
                profile_summary(path)
    steps = print_trace(args.trace) if args.trace else None
    return {
        "benchmark": "queue",
        "steps": steps,
        "args": {k: str(v) for k, v in vars(args).items()},
        "machine": info,
        "load_average_end": load_average(),
        "summary": summary,
        "rounds": _plain(rounds),
    }


def print_trace(folder: Path) -> dict[str, Any]:
    """Each step's mean time and its time per job, from ``bench.trace``'s output."""
    steps: dict[str, Any] = {}
    for name in ("api", "worker"):
        path = folder / f"{name}.json"
        if not path.exists():
            continue
        data = json.loads(path.read_text())
        jobs = (data.get("db.create") if name == "api" else data.get("db.claim")) or {"count": 1}
        print(f"\n{name}: wall-clock time per step (round 1, {jobs['count']} jobs, every phase):")
        print(f"  {'step':<58} {'calls/job':>9} {'mean ms':>8} {'ms/job':>7}")
        for label, figures in sorted(data.items(), key=lambda kv: -kv[1]["total"]):
            per_job = figures["total"] / jobs["count"] * 1e3
            print(
                f"  {label:<58} {figures['count'] / jobs['count']:9.2f}"
                f" {figures['mean'] * 1e3:8.2f} {per_job:7.2f}"
            )
        steps[name] = data
    return steps


def _plain(value: Any) -> Any:
    if isinstance(value, Percentiles):
        return value.as_dict()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _mark(ok: bool) -> str:
    return "met" if ok else "MISSED"


def main() -> int:
    if len(sys.argv) == 6 and sys.argv[1] == "--consume-only":
        _, _, url, queue, count, prefetch = sys.argv
        asyncio.run(consume_only(url, queue, int(count), int(prefetch)))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
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
    args = parser.parse_args()
    if args.whatif and args.baseline:
        parser.error("--whatif and --baseline are exclusive")
    args.jobs = args.jobs or (20 if args.quick else 2000)
    args.light_jobs = args.light_jobs or (5 if args.quick else 100)
    args.repeat = args.repeat or (1 if args.quick else 3)
    args.warmup = 3 if args.quick else WARMUP
    if args.quick:
        args.light_rate = max(args.light_rate, 10.0)
    with source_tree(args.baseline) as args.baseline_tree:
        write_json(args.json, asyncio.run(run(args)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
