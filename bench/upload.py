"""Benchmark: a large upload through ``POST /video/submit`` against raw S3 multipart.

    python -m bench.upload [--quick] [--size-mib N] [--repeat R] [--json PATH]

Makes (once, cached) an MP4-like file of ``--size-mib`` MiB (1024 by default,
32 with ``--quick``): an ISO-BMFF ``ftyp`` box, then random bytes. Each round,
on a real S3 server of its own (rclone's ``serve s3`` on a temporary folder,
started fresh each round):

1. **raw multipart**: aiobotocore, the file read in 8 MiB parts, each part
   uploaded in turn (what the api's store adapter does), and the same with 4
   parts in flight;
2. **videoq**: the same file streamed as ``multipart/form-data`` through
   ``POST /video/submit`` of a ``videoq-api`` process (fresh vhost, database
   and bucket; no worker), while a thread samples the api process's RSS every
   20 ms: MB/s from the first byte sent to the 202, the RSS growth over the
   process's RSS just before (after a warm-up upload), and the api's CPU
   seconds per GiB;
3. with ``--whatif upload-overlap``, the same with the api's multipart upload
   sending one part in the background while it receives the next.

Each object is deleted once measured (its copy fills the disk). Prints the median of ``--repeat`` rounds (default 3) and the ratio
videoq / raw multipart.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import functools
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiobotocore.session
import httpx
import psutil  # type: ignore[import-untyped]
from botocore.config import Config

from bench.figures import Row, Target, median, show, write_json
from bench.inputs import mp4_like_file
from bench.machine import describe, figures_document, load_average, print_description
from bench.stack import (
    Code,
    bench_services,
    default_s3_credentials,
    fresh_stack,
    retrying,
    s3_endpoint,
)

MiB = 1024 * 1024
PART = 8 * MiB


@dataclass(frozen=True)
class ApiUpload:
    """One upload through ``POST /video/submit``, and the api process meanwhile."""

    seconds: float
    rss_baseline_mb: float
    rss_peak_mb: float
    rss_growth_mb: float
    rss_after_mb: float
    api_cpu_seconds: float


@dataclass(frozen=True)
class UploadRound:
    """One round: the same file by raw multipart (one part in flight, then
    four) and through videoq's submit (and a what-if's)."""

    size: int
    raw_seconds: float
    raw4_seconds: float
    videoq: ApiUpload
    whatif: ApiUpload | None = None

    def figures(self) -> dict[str, float]:
        """Under the names of the JSON figures (a what-if's only if it ran)."""
        mb = self.size / 1e6
        out = {
            "raw_mb_s": mb / self.raw_seconds,
            "raw4_mb_s": mb / self.raw4_seconds,
            "videoq_mb_s": mb / self.videoq.seconds,
            **dataclasses.asdict(self.videoq),
            "api_cpu_s_per_gib": self.videoq.api_cpu_seconds / (self.size / 2**30),
        }
        if self.whatif is not None:
            out["whatif_mb_s"] = mb / self.whatif.seconds
            out["whatif_rss_growth_mb"] = self.whatif.rss_growth_mb
        return out


def _rows(figures: dict[str, float], whatif: str) -> list[Row]:
    """One round's figures, or the medians of several (same names, and the
    medians of the rounds' ratios)."""
    ratio = figures.get("ratio", figures["videoq_mb_s"] / figures["raw_mb_s"])
    rows = [
        Row("raw multipart, 1 part in flight", figures["raw_mb_s"], "MB/s"),
        Row("raw multipart, 4 parts in flight", figures["raw4_mb_s"], "MB/s"),
        Row(
            "videoq submit",
            figures["videoq_mb_s"],
            "MB/s",
            note=f"{ratio:.2f}x raw;"
            f" api RSS {figures['rss_baseline_mb']:.0f} MB -> peak {figures['rss_peak_mb']:.0f} MB"
            f" (+{figures['rss_growth_mb']:.1f} MB); api CPU {figures['api_cpu_s_per_gib']:.1f} s/GiB",
        ),
    ]
    if "whatif_mb_s" in figures:
        whatif_ratio = figures.get("whatif_ratio", figures["whatif_mb_s"] / figures["raw_mb_s"])
        rows.append(
            Row(
                f"what-if ({whatif}): videoq submit",
                figures["whatif_mb_s"],
                "MB/s",
                note=f"{whatif_ratio:.2f}x raw; api RSS +{figures['whatif_rss_growth_mb']:.1f} MB",
            )
        )
    return rows


async def raw_multipart(endpoint: str, path: Path, *, in_flight: int) -> float:
    """Upload ``path`` in 8 MiB parts, ``in_flight`` at a time; return the seconds."""
    session = aiobotocore.session.get_session()
    config = Config(s3={"addressing_style": "path"}, max_pool_connections=50)
    bucket, key = f"raw-{uuid.uuid4().hex[:10]}", "raw.mp4"
    async with session.create_client(
        "s3", endpoint_url=endpoint, region_name="us-east-1", config=config
    ) as s3:
        await s3.create_bucket(Bucket=bucket)
        started = time.perf_counter()
        created = await s3.create_multipart_upload(Bucket=bucket, Key=key, ContentType="video/mp4")
        upload_id = created["UploadId"]
        parts: dict[int, str] = {}
        slots = asyncio.Semaphore(in_flight)
        tasks = []

        async def send(number: int, data: bytes) -> None:
            try:
                answer = await s3.upload_part(
                    Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=data
                )
                parts[number] = answer["ETag"]
            finally:
                slots.release()

        with path.open("rb") as handle:
            number = 0
            while True:
                await slots.acquire()
                data = await asyncio.to_thread(handle.read, PART)
                if not data:
                    slots.release()
                    break
                number += 1
                tasks.append(asyncio.create_task(send(number, data)))
        await asyncio.gather(*tasks)
        await s3.complete_multipart_upload(
            Bucket=bucket,
            Key=key,
            UploadId=upload_id,
            MultipartUpload={"Parts": [{"PartNumber": n, "ETag": parts[n]} for n in sorted(parts)]},
        )
        seconds = time.perf_counter() - started
        await s3.delete_object(Bucket=bucket, Key=key)
        await s3.delete_bucket(Bucket=bucket)
    return seconds


def _form(path: Path, boundary: str) -> tuple[int, AsyncIterator[bytes]]:
    """A ``multipart/form-data`` body (pipeline field + file), streamed from disk."""
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="pipeline"\r\n\r\nnoop\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.mp4"\r\n'
        "Content-Type: video/mp4\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    size = len(head) + path.stat().st_size + len(tail)

    async def body() -> AsyncIterator[bytes]:
        yield head
        with path.open("rb") as handle:
            while chunk := await asyncio.to_thread(handle.read, MiB):
                yield chunk
        yield tail

    return size, body()


class RssSampler:
    """Samples a process's RSS every ``interval`` seconds in a thread."""

    def __init__(self, pid: int, interval: float = 0.02) -> None:
        self._process = psutil.Process(pid)
        self._interval = interval
        self._stop = threading.Event()
        self.peak = self._process.memory_info().rss
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._process.memory_info().rss)
            self._stop.wait(self._interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


async def _submit(http: httpx.AsyncClient, path: Path) -> float:
    boundary = uuid.uuid4().hex
    size, body = _form(path, boundary)
    started = time.perf_counter()
    response = await http.post(
        "/video/submit",
        content=body,
        headers={
            "Content-Type": f"multipart/form-data; boundary={boundary}",
            "Content-Length": str(size),
        },
    )
    seconds = time.perf_counter() - started
    if response.status_code != 202:
        raise RuntimeError(f"submit answered {response.status_code}: {response.text[:300]}")
    return seconds


async def videoq_upload(endpoint: str, path: Path, warmup: Path, *, whatif: str = "") -> ApiUpload:
    # With a what-if, the api runs under bench.trace, which patches the proposed change in.
    async with fresh_stack(endpoint, code=Code(whatif=whatif)) as bench:
        url = bench.start_api()
        api = psutil.Process(bench.pid("api"))
        async with httpx.AsyncClient(base_url=url, timeout=600) as http:
            await _submit(http, warmup)  # imports, pools and the multipart path warmed up
            await asyncio.sleep(0.5)
            baseline = api.memory_info().rss
            cpu_before = sum(api.cpu_times()[:2])
            with RssSampler(api.pid) as sampler:
                seconds = await _submit(http, path)
            cpu = sum(api.cpu_times()[:2]) - cpu_before
            after = api.memory_info().rss
        return ApiUpload(
            seconds=seconds,
            rss_baseline_mb=baseline / 1e6,
            rss_peak_mb=sampler.peak / 1e6,
            rss_growth_mb=(sampler.peak - baseline) / 1e6,
            rss_after_mb=after / 1e6,
            api_cpu_seconds=cpu,
        )


async def one_round(path: Path, warmup: Path, whatif: str) -> UploadRound:
    with s3_endpoint(own=True) as (endpoint, _):
        raw = await raw_multipart(endpoint, path, in_flight=1)
        vq = await videoq_upload(endpoint, path, warmup)
        raw4 = await raw_multipart(endpoint, path, in_flight=4)
        patched = await videoq_upload(endpoint, path, warmup, whatif=whatif) if whatif else None
    got = UploadRound(path.stat().st_size, raw, raw4, vq, patched)
    show(_rows(got.figures(), whatif))
    return got


async def run(args: argparse.Namespace) -> dict[str, Any]:
    info = describe(bench_services())
    print_description(info)
    path = mp4_like_file(args.size_mib * MiB)
    warmup = mp4_like_file(16 * MiB)
    print(f"file: {path} ({args.size_mib} MiB); {args.repeat} round(s), medians reported")
    rounds = []
    for number in range(args.repeat):
        print(f"round {number + 1}/{args.repeat} (load {' '.join(map(str, load_average()))})")
        rounds.append(
            await retrying("round", functools.partial(one_round, path, warmup, args.whatif))
        )
    figures = [r.figures() for r in rounds]
    summary = {k: median([f[k] for f in figures]) for k in figures[0]}
    ratio = median([f["videoq_mb_s"] / f["raw_mb_s"] for f in figures])
    summary["ratio"] = ratio
    if args.whatif:
        summary["whatif_ratio"] = median([f["whatif_mb_s"] / f["raw_mb_s"] for f in figures])
    show(_rows(summary, args.whatif), f"median of {len(rounds)} round(s):")
    growth = summary["rss_growth_mb"]
    show(
        [
            Target("upload >= 0.7x raw multipart", f"{ratio:.2f}x", ratio >= 0.7),
            Target(
                f"api RSS growth < 50 MB for {args.size_mib} MiB", f"{growth:.1f} MB", growth < 50
            ),
        ],
        "targets:",
    )
    return figures_document(
        "upload",
        args,
        info,
        summary=summary,
        rounds=figures,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.upload", description=(__doc__ or "").split("\n\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="32 MiB, one round (for CI)")
    parser.add_argument("--size-mib", type=int, help="file size in MiB (default 1024)")
    parser.add_argument("--repeat", type=int, help="rounds (the median is reported)")
    parser.add_argument(
        "--whatif",
        default="",
        help="also measure the api with a proposed change patched in: upload-overlap"
        " (see bench/trace.py)",
    )
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args(argv)
    args.size_mib = args.size_mib or (32 if args.quick else 1024)
    args.repeat = args.repeat or (1 if args.quick else 3)
    default_s3_credentials()
    write_json(args.json, asyncio.run(run(args)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
