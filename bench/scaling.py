"""Benchmark: throughput with 1, 2 and 4 worker processes on a CPU-heavy
pipeline, and latency against queue depth.

    python -m bench.scaling [--quick] [--workers 1,2,4] [--jobs N]
        [--pipeline scene] [--seconds S] [--depths 1,2,4,8,16] [--repeat R] [--json PATH]

The clip is the pipeline benchmark's generated 720p 30 fps H.264 clip (grain,
camera motion, shots; cached), ``--seconds`` long (4 by default, 1 with
``--quick``); each job runs ``--pipeline`` (default ``scene``, stride 1) on it.
Each round, on the real stack (fresh vhost, database and bucket each time):

- *throughput*: for each worker count W, ``videoq-api``, W ``videoq-worker``
  processes and ``videoq-janitor``; after one warm-up job per worker, N jobs
  (default 16) are submitted at once: jobs/s from the first submit to the last
  completion, and the video seconds and frames analysed per second;
- *latency vs queue depth*: with ``--depth-workers`` workers (default 2), D
  jobs are submitted at once (a queue D deep), for each D, and the
  submit-to-completed latency of each measured (from the job rows).

Prints each round, then the median of ``--repeat`` rounds (default 3).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import av
import httpx

from bench.figures import (
    Percentiles,
    Row,
    median,
    median_percentiles,
    percentiles,
    show,
    write_json,
)
from bench.inputs import shots_clip
from bench.machine import describe, figures_document, load_average, print_description
from bench.stack import (
    CpuMeter,
    bench_services,
    default_s3_credentials,
    fresh_stack,
    retrying,
    s3_endpoint,
    submit_clip,
    wait_for_consumers,
)


@dataclass(frozen=True)
class Finished:
    """A batch of jobs submitted at once, all finished."""

    #: From the first submit to the last completion.
    seconds: float
    #: Each job's, from its submit to its completion.
    latency: Percentiles
    failed: int


@dataclass
class WorkersRun:
    """W workers: the throughput of a batch, then (with ``--depth-workers``
    workers) the latency at each queue depth."""

    workers: int
    jobs_per_s: float
    seconds: float
    failed: int
    cpu_ms_per_job: dict[str, float]
    depth: dict[int, Percentiles] = field(default_factory=dict)

    def row(self, seconds: int, frames: int) -> Row:
        cpu = self.cpu_ms_per_job["worker"] / 1e3
        return Row(
            f"{self.workers} worker process(es): throughput",
            self.jobs_per_s,
            "jobs/s",
            note=f"= {self.jobs_per_s * seconds:.2f} video s/s"
            f" = {self.jobs_per_s * frames:.1f} frames/s (failed {self.failed});"
            f" worker CPU {cpu:.2f} s/job = {cpu / seconds:.3f} core-s per video s",
        )


async def _submit_all(url: str, clip: bytes, count: int, pipeline: str) -> list[tuple[str, float]]:
    limits = httpx.Limits(max_connections=8)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=120) as http:

        async def one() -> tuple[str, float]:
            started = time.time()
            return await submit_clip(http, clip, pipeline=pipeline), started

        return list(await asyncio.gather(*(one() for _ in range(count))))


async def _finish(
    db: asyncpg.Connection, submits: list[tuple[str, float]], within: float
) -> Finished:
    ids = [s[0] for s in submits]
    deadline = time.monotonic() + within
    while True:
        rows = await db.fetch(
            "SELECT job_id, status, updated_at FROM jobs WHERE job_id = ANY($1::uuid[])"
            " AND status IN ('completed', 'failed')",
            ids,
        )
        if len(rows) == len(ids):
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(rows)} of {len(ids)} jobs finished after {within:.0f} s")
        await asyncio.sleep(0.2)
    done = {str(r["job_id"]): r for r in rows}
    failed = sum(1 for r in rows if r["status"] != "completed")
    latencies = [done[job_id]["updated_at"].timestamp() - started for job_id, started in submits]
    first = min(s[1] for s in submits)
    last = max(r["updated_at"].timestamp() for r in rows)
    return Finished(last - first, percentiles(latencies), failed)


async def throughput(s3: str, clip: bytes, workers: int, args: argparse.Namespace) -> WorkersRun:
    """Jobs/s with ``workers`` workers; then, with ``--depth-workers`` of them,
    the latency at each queue depth (in the same stack)."""
    async with fresh_stack(s3) as bench:
        url = bench.start_api()
        bench.start_workers(workers)
        bench.stack.start_janitor()
        await wait_for_consumers(bench.amqp_url, bench.settings.queue_process, workers)
        db = await asyncpg.connect(bench.database_url)
        try:
            warm = await _submit_all(url, clip, workers, args.pipeline)
            await _finish(db, warm, 300)
            pids = {"worker": [bench.pid(w) for w in bench.workers], "api": [bench.pid("api")]}
            meter = CpuMeter(pids)
            batch = await _finish(db, await _submit_all(url, clip, args.jobs, args.pipeline), 900)
            got = WorkersRun(
                workers=workers,
                jobs_per_s=args.jobs / batch.seconds,
                seconds=batch.seconds,
                failed=batch.failed,
                cpu_ms_per_job=meter.per_job(pids, args.jobs),
            )
            if workers == args.depth_workers:
                for depth in args.depths:
                    submits = await _submit_all(url, clip, depth, args.pipeline)
                    got.depth[depth] = (await _finish(db, submits, 900)).latency
                    show(
                        [
                            Row(
                                f"queue depth {depth:3d} ({workers} workers)",
                                latency=got.depth[depth],
                            )
                        ]
                    )
        finally:
            await db.close()
    return got


async def one_round(
    s3: str, clip: bytes, frames: int, args: argparse.Namespace
) -> dict[int, WorkersRun]:
    out: dict[int, WorkersRun] = {}
    for workers in args.workers:
        out[workers] = got = await retrying(
            f"{workers} workers", functools.partial(throughput, s3, clip, workers, args)
        )
        show([got.row(args.seconds, frames)])
    return out


async def run(args: argparse.Namespace) -> dict[str, Any]:
    info = describe(bench_services())
    print_description(info)
    path = shots_clip(args.seconds)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = stream.frames
        size = f"{stream.codec_context.width}x{stream.codec_context.height}"
    clip = path.read_bytes()
    print(
        f"clip: {path} ({size}, {frames} frames, {len(clip) / 1e6:.1f} MB); pipeline"
        f" {args.pipeline} stride 1; {args.jobs} jobs per worker count; {args.repeat} round(s)"
    )
    rounds = []
    with s3_endpoint() as (s3, _):
        for number in range(args.repeat):
            print(f"round {number + 1}/{args.repeat} (load {' '.join(map(str, load_average()))})")
            rounds.append(await one_round(s3, clip, frames, args))
    summary: dict[str, Any] = {"throughput": {}, "depth": {}}
    rows = []
    base = median([r[args.workers[0]].jobs_per_s for r in rounds])
    for workers in args.workers:
        rate = median([r[workers].jobs_per_s for r in rounds])
        cpu = median([r[workers].cpu_ms_per_job["worker"] for r in rounds]) / 1e3
        api_cpu = median([r[workers].cpu_ms_per_job["api"] for r in rounds]) / 1e3
        summary["throughput"][workers] = {
            "worker_cpu_s_per_job": cpu,
            "worker_core_s_per_video_s": cpu / args.seconds,
            "api_cpu_s_per_job": api_cpu,
            "jobs_per_s": rate,
            "video_s_per_s": rate * args.seconds,
            "frames_per_s": rate * frames,
            "speedup": rate / base,
        }
        rows.append(
            Row(
                f"{workers} worker process(es): throughput",
                rate,
                "jobs/s",
                note=f"{rate * args.seconds:.2f} video s/s, {rate * frames:.1f} frames/s,"
                f" {rate / base:.2f}x; worker CPU {cpu:.2f} s/job"
                f" ({cpu / args.seconds:.3f} core-s per video s), api CPU {api_cpu * 1e3:.0f} ms/job",
            )
        )
    for depth in args.depths:
        latency = median_percentiles([r[args.depth_workers].depth[depth] for r in rounds])
        summary["depth"][depth] = {k: getattr(latency, k) for k in ("p50", "p95", "max", "mean")}
        rows.append(Row(f"queue depth {depth:3d} ({args.depth_workers} workers)", latency=latency))
    show(rows, f"median of {len(rounds)} round(s):")
    return figures_document(
        "scaling",
        args,
        info,
        clip={"path": str(path), "frames": frames, "seconds": args.seconds, "size": size},
        summary=summary,
        rounds=[
            {
                "throughput": {
                    w: {
                        "seconds": t.seconds,
                        "failed": t.failed,
                        "jobs_per_s": t.jobs_per_s,
                        "cpu_ms_per_job": t.cpu_ms_per_job,
                    }
                    for w, t in r.items()
                },
                "depth": r[args.depth_workers].depth,
            }
            for r in rounds
        ],
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.scaling", description=(__doc__ or "").split("\n\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes (for CI)")
    parser.add_argument("--workers", help="comma-separated worker counts (default 1,2,4)")
    parser.add_argument("--jobs", type=int, help="jobs per worker count (default 16)")
    parser.add_argument("--pipeline", default="scene", help="pipeline to run (default scene)")
    parser.add_argument("--seconds", type=int, help="clip length (default 4)")
    parser.add_argument("--depths", help="comma-separated queue depths (default 1,2,4,8,16)")
    parser.add_argument(
        "--depth-workers", type=int, default=2, help="workers for the depth test (one of --workers)"
    )
    parser.add_argument("--repeat", type=int, help="rounds (the median is reported)")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args(argv)
    args.workers = [int(x) for x in (args.workers or ("2" if args.quick else "1,2,4")).split(",")]
    args.jobs = args.jobs or (2 if args.quick else 16)
    args.seconds = args.seconds or (1 if args.quick else 4)
    args.depths = [
        int(x) for x in (args.depths or ("2" if args.quick else "1,2,4,8,16")).split(",")
    ]
    args.repeat = args.repeat or (1 if args.quick else 3)
    if args.depth_workers not in args.workers:
        parser.error("--depth-workers must be one of --workers")
    default_s3_credentials()
    write_json(args.json, asyncio.run(run(args)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
