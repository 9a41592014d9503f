"""Benchmark: a direct upload (docs/uploads.md) against raw S3 multipart, and
the api's CPU per GiB direct vs through ``POST /video/submit``.

    python -m bench.direct_upload [--quick] [--size-mib N] [--repeat R] [--json PATH]

Same file and store as ``bench.upload`` (an MP4-like file, rclone's ``serve
s3`` started fresh each round). Each round:

1. **raw multipart**: aiobotocore, 8 MiB parts, 1 and then 4 in flight
   (``bench.upload.raw_multipart``);
2. **direct**: ``POST /video/uploads`` to a ``videoq-api`` process, each
   presigned part PUT with httpx (1, then 4 in flight), then ``complete``
   (which reads the object's first bytes to sniff it): seconds from the
   create to complete's answer, and the api process's CPU seconds;
3. **streamed submit**: the same file through ``POST /video/submit``
   (``bench.upload.videoq_upload``), for its api CPU per GiB.

The machine is shared (other sessions run on it): read the figures as a
ratio within a round, not as absolutes.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import psutil  # type: ignore[import-untyped]

from bench.figures import Row, Target, median, show, write_json
from bench.inputs import mp4_like_file
from bench.machine import describe, figures_document, load_average, print_description
from bench.stack import bench_services, default_s3_credentials, fresh_stack, retrying, s3_endpoint
from bench.upload import MiB, raw_multipart, videoq_upload


async def direct_upload(endpoint: str, path: Path, *, in_flight: int) -> tuple[float, float]:
    """One direct upload of ``path`` through a fresh api; ``(seconds, api CPU seconds)``."""
    async with fresh_stack(endpoint) as bench:
        url = bench.start_api()
        api = psutil.Process(bench.pid("api"))
        limits = httpx.Limits(max_connections=in_flight + 2)
        async with (
            httpx.AsyncClient(base_url=url, timeout=600) as http,
            httpx.AsyncClient(timeout=600, limits=limits) as store,
        ):
            await http.get("/healthz")
            cpu_before = sum(api.cpu_times()[:2])
            started = time.perf_counter()
            answer = await http.post("/video/uploads", json={"size": path.stat().st_size})
            answer.raise_for_status()
            created = answer.json()
            size = created["part_size"]
            slots = asyncio.Semaphore(in_flight)
            etags: dict[int, str] = {}

            async def send(number: int, part_url: str) -> None:
                async with slots:
                    with path.open("rb") as handle:
                        handle.seek((number - 1) * size)
                        data = await asyncio.to_thread(handle.read, size)
                    put = await store.put(part_url, content=data)
                    put.raise_for_status()
                    etags[number] = put.headers["etag"]

            await asyncio.gather(*(send(p["part_number"], p["url"]) for p in created["parts"]))
            parts = [{"part_number": n, "etag": etags[n]} for n in sorted(etags)]
            done = await http.post(
                f"/video/uploads/{created['upload_id']}/complete", json={"parts": parts}
            )
            done.raise_for_status()
            seconds = time.perf_counter() - started
            cpu = sum(api.cpu_times()[:2]) - cpu_before
    return seconds, cpu


async def one_round(path: Path, warmup: Path) -> dict[str, float]:
    gib = path.stat().st_size / 2**30
    mb = path.stat().st_size / 1e6
    with s3_endpoint(own=True) as (endpoint, _):
        raw1 = await raw_multipart(endpoint, path, in_flight=1)
        direct1, cpu1 = await direct_upload(endpoint, path, in_flight=1)
        raw4 = await raw_multipart(endpoint, path, in_flight=4)
        direct4, cpu4 = await direct_upload(endpoint, path, in_flight=4)
        streamed = await videoq_upload(endpoint, path, warmup)
    figures = {
        "raw1_mb_s": mb / raw1,
        "direct1_mb_s": mb / direct1,
        "raw4_mb_s": mb / raw4,
        "direct4_mb_s": mb / direct4,
        "ratio1": raw1 / direct1,
        "ratio4": raw4 / direct4,
        "direct_api_cpu_s_per_gib": (cpu1 + cpu4) / 2 / gib,
        "streamed_mb_s": mb / streamed.seconds,
        "streamed_api_cpu_s_per_gib": streamed.api_cpu_seconds / gib,
    }
    show(_rows(figures))
    return figures


def _rows(f: dict[str, float]) -> list[Row]:
    return [
        Row("raw multipart, 1 part in flight", f["raw1_mb_s"], "MB/s"),
        Row(
            "direct upload, 1 part in flight",
            f["direct1_mb_s"],
            "MB/s",
            note=f"{f['ratio1']:.2f}x raw",
        ),
        Row("raw multipart, 4 parts in flight", f["raw4_mb_s"], "MB/s"),
        Row(
            "direct upload, 4 parts in flight",
            f["direct4_mb_s"],
            "MB/s",
            note=f"{f['ratio4']:.2f}x raw",
        ),
        Row("streamed submit", f["streamed_mb_s"], "MB/s"),
        Row("api CPU per GiB, direct", f["direct_api_cpu_s_per_gib"], "s"),
        Row("api CPU per GiB, streamed submit", f["streamed_api_cpu_s_per_gib"], "s"),
    ]


async def run(args: argparse.Namespace) -> dict[str, Any]:
    info = describe(bench_services())
    print_description(info)
    path = mp4_like_file(args.size_mib * MiB)
    warmup = mp4_like_file(16 * MiB)
    print(f"file: {path} ({args.size_mib} MiB); {args.repeat} round(s), medians reported")
    rounds = []
    for number in range(args.repeat):
        print(f"round {number + 1}/{args.repeat} (load {' '.join(map(str, load_average()))})")
        rounds.append(await retrying("round", functools.partial(one_round, path, warmup)))
    summary = {k: median([r[k] for r in rounds]) for k in rounds[0]}
    show(_rows(summary), f"median of {len(rounds)} round(s):")
    share = summary["direct_api_cpu_s_per_gib"] / summary["streamed_api_cpu_s_per_gib"]
    show(
        [
            Target(
                "direct >= 0.95x raw (4 in flight)",
                f"{summary['ratio4']:.2f}x",
                summary["ratio4"] >= 0.95,
            ),
            Target("direct api CPU <= 5% of streamed", f"{share:.1%}", share <= 0.05),
        ],
        "targets:",
    )
    return figures_document(
        "direct_upload",
        args,
        info,
        summary=summary,
        rounds=rounds,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.direct_upload", description=(__doc__ or "").split("\n\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="32 MiB, one round (for CI)")
    parser.add_argument("--size-mib", type=int, help="file size in MiB (default 1024)")
    parser.add_argument("--repeat", type=int, help="rounds (the median is reported)")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args(argv)
    args.size_mib = args.size_mib or (32 if args.quick else 1024)
    args.repeat = args.repeat or (1 if args.quick else 3)
    default_s3_credentials()
    write_json(args.json, asyncio.run(run(args)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
