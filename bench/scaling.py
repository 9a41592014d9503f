"""Benchmark: throughput with 1, 2 and 4 worker processes on a CPU-heavy
pipeline, and latency against queue depth.

    python bench/scaling.py [--quick] [--workers 1,2,4] [--jobs N]
                            [--pipeline scene] [--seconds S] [--depths 1,2,4,8,16]
                            [--repeat R] [--json PATH]

The clip is ``bench/pipeline.py``'s generated 720p 30 fps H.264 clip (grain,
camera motion, shots; cached), ``--seconds`` long (4 by default, 2 with
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
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import asyncpg
import av
import httpx

from bench.common import (
    CpuMeter,
    bench_services,
    cache_dir,
    fresh_stack,
    load_average,
    machine,
    median,
    percentiles,
    print_machine,
    retrying,
    s3_endpoint,
    submit_clip,
    wait_for_consumers,
    write_json,
)


def make_clip(seconds: int) -> Path:
    """``bench/pipeline.py``'s benchmark clip (720p30, grain, motion), ``seconds`` long."""
    try:
        from bench.pipeline import CLIP_VERSION
        from bench.pipeline import make_clip as pipeline_clip
    except ImportError:  # pragma: no cover - the pipeline benchmark moved
        from tests.support.videos import make_mp4

        path = cache_dir() / f"scaling-{seconds}s-720p30.mp4"
        return (
            path
            if path.exists()
            else make_mp4(path, seconds=seconds, fps=30, width=1280, height=720, segments=3)
        )
    return pipeline_clip(cache_dir() / f"clip-{seconds}s-720p30-v{CLIP_VERSION}.mp4", seconds)


async def _submit_all(url: str, clip: bytes, count: int, pipeline: str) -> list[tuple[str, float]]:
    limits = httpx.Limits(max_connections=8)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=120) as http:

        async def one() -> tuple[str, float]:
            started = time.time()
            return await submit_clip(http, clip, pipeline=pipeline), started

        return list(await asyncio.gather(*(one() for _ in range(count))))


async def _finish(
    db: asyncpg.Connection, submits: list[tuple[str, float]], within: float
) -> dict[str, Any]:
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
    return {"seconds": last - first, "latency": percentiles(latencies), "failed": failed}


async def throughput(
    s3: str, clip: bytes, workers: int, args: argparse.Namespace
) -> dict[str, Any]:
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
            got = await _finish(db, await _submit_all(url, clip, args.jobs, args.pipeline), 900)
            got["jobs_per_s"] = args.jobs / got["seconds"]
            got["cpu_ms_per_job"] = meter.per_job(pids, args.jobs)
            got["depth"] = {}
            if workers == args.depth_workers:
                for depth in args.depths:
                    submits = await _submit_all(url, clip, depth, args.pipeline)
                    got["depth"][depth] = latency = await _finish(db, submits, 900)
                    print(
                        f"  queue depth {depth:3d} ({workers} workers): {latency['latency'].ms()}",
                        flush=True,
                    )
        finally:
            await db.close()
    return got


async def one_round(s3: str, clip: bytes, frames: int, args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {"throughput": {}, "depth": {}}
    for workers in args.workers:
        got = await retrying(f"{workers} workers", lambda w=workers: throughput(s3, clip, w, args))
        out["throughput"][workers] = got
        print(
            f"  {workers} worker process(es): {got['jobs_per_s']:5.2f} jobs/s"
            f" = {got['jobs_per_s'] * args.seconds:5.2f} video s/s"
            f" = {got['jobs_per_s'] * frames:6.1f} frames/s  (failed {got['failed']});"
            f" worker CPU {got['cpu_ms_per_job']['worker'] / 1e3:.2f} s/job"
            f" = {got['cpu_ms_per_job']['worker'] / 1e3 / args.seconds:.3f} core-s per video s",
            flush=True,
        )
        out["depth"].update(got.pop("depth"))
    return out


async def run(args: argparse.Namespace) -> dict[str, Any]:
    info = machine(bench_services())
    print_machine(info)
    path = make_clip(args.seconds)
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
    print(f"\nmedian of {len(rounds)} round(s):")
    summary: dict[str, Any] = {"throughput": {}, "depth": {}}
    base = median([r["throughput"][args.workers[0]]["jobs_per_s"] for r in rounds])
    for workers in args.workers:
        rate = median([r["throughput"][workers]["jobs_per_s"] for r in rounds])
        cpu = median([r["throughput"][workers]["cpu_ms_per_job"]["worker"] for r in rounds]) / 1e3
        api_cpu = median([r["throughput"][workers]["cpu_ms_per_job"]["api"] for r in rounds]) / 1e3
        summary["throughput"][workers] = {
            "worker_cpu_s_per_job": cpu,
            "worker_core_s_per_video_s": cpu / args.seconds,
            "api_cpu_s_per_job": api_cpu,
            "jobs_per_s": rate,
            "video_s_per_s": rate * args.seconds,
            "frames_per_s": rate * frames,
            "speedup": rate / base,
        }
        print(
            f"  {workers} worker process(es): {rate:5.2f} jobs/s, {rate * args.seconds:5.2f} video s/s,"
            f" {rate * frames:6.1f} frames/s, {rate / base:.2f}x; worker CPU {cpu:.2f} s/job"
            f" ({cpu / args.seconds:.3f} core-s per video s), api CPU {api_cpu * 1e3:.0f} ms/job"
        )
    for depth in args.depths:
        p = {
            k: median([getattr(r["depth"][depth]["latency"], k) for r in rounds])
            for k in ("p50", "p95", "max", "mean")
        }
        summary["depth"][depth] = p
        print(
            f"  queue depth {depth:3d}: latency p50 {p['p50']:.2f} s, max {p['max']:.2f} s"
            f" (mean {p['mean']:.2f} s)"
        )
    return {
        "benchmark": "scaling",
        "args": {k: str(v) for k, v in vars(args).items()},
        "clip": {"path": str(path), "frames": frames, "seconds": args.seconds, "size": size},
        "machine": info,
        "load_average_end": load_average(),
        "summary": summary,
        "rounds": [
            {
                "throughput": {
                    w: {k: v for k, v in t.items() if k != "latency"}
                    for w, t in r["throughput"].items()
                },
                "depth": {d: x["latency"].as_dict() for d, x in r["depth"].items()},
            }
            for r in rounds
        ],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
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
    args = parser.parse_args()
    args.workers = [int(x) for x in (args.workers or ("2" if args.quick else "1,2,4")).split(",")]
    args.jobs = args.jobs or (2 if args.quick else 16)
    args.seconds = args.seconds or (1 if args.quick else 4)
    args.depths = [
        int(x) for x in (args.depths or ("2" if args.quick else "1,2,4,8,16")).split(",")
    ]
    args.repeat = args.repeat or (1 if args.quick else 3)
    if args.depth_workers not in args.workers:
        parser.error("--depth-workers must be one of --workers")
    write_json(args.json, asyncio.run(run(args)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
