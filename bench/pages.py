"""Benchmark: a page of results from a large document, through its index and without.

    python -m bench.pages [--quick] [--entries 100000] [--limit 1000]
        [--pages 200] [--legacy-pages 30] [--json PATH]

On the real stack (``videoq-api`` on PostgreSQL and rclone's S3 server, a
fresh database and bucket), two completed jobs share one results document of
``--entries`` entries shaped as the ``basic`` pipeline writes them (about
100 bytes each): one with its index beside it (``<key>.index``, as the worker
uploads it), one without (a job completed before there were indexes, which
the api pages by reading and parsing the whole document). For each, pages of
``--limit`` entries at random offsets, one request at a time: latency as the
client saw it (p50, p95), the api process's CPU time per page, and its RSS
before the first page, at its highest and after the last (sampled after every
page). The goal (issue 17) is 20 ms of api time a page: judged on the api's
CPU time and on the median latency, since on a shared 2-core machine the tail
is the scheduler's. The indexed job is read first, so the whole-document reads' memory does
not count against it. The client is a raw keep-alive HTTP/1.1 connection
(``bench.api_load.RawHttp``) on the same machine.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped]

from bench.api_load import RawHttp
from bench.figures import Percentiles, Row, Target, percentiles, show, write_json
from bench.machine import describe, figures_document, load_average, print_description
from bench.stack import BenchStack, bench_services, default_s3_credentials, fresh_stack, s3_endpoint
from shared.backends import open_backends
from shared.jobs import results_key
from shared.pipeline.document import ResultsWriter
from shared.pipeline.index import INDEX_SUFFIX

#: The api time a page of 1,000 entries of a 100,000-entry document may take (issue 17).
PAGE_GOAL_S = 0.020


@dataclass(frozen=True)
class Paging:
    """Pages of one job, as the client saw them and as the api paid for them."""

    latency: Percentiles
    api_cpu_ms_per_page: float
    rss_mib_before: float
    rss_mib_peak: float
    rss_mib_after: float

    def row(self, label: str) -> Row:
        note = (
            f"api CPU {self.api_cpu_ms_per_page:.1f} ms/page, RSS MiB"
            f" {self.rss_mib_before:.0f} -> peak {self.rss_mib_peak:.0f}"
            f" -> {self.rss_mib_after:.0f}"
        )
        return Row(label, latency=self.latency, note=note)


def _document(folder: Path, entries: int) -> tuple[Path, Path]:
    """A results document of ``entries`` entries as the ``basic`` pipeline
    writes them, and its index."""
    path = folder / "results.json"
    rng = random.Random(17)
    writer = ResultsWriter(
        path,
        header={
            "job_id": str(uuid.uuid4()),
            "video": {"width": 1280, "height": 720, "fps": 30.0, "frames": entries},
            "pipeline": "basic",
        },
    )
    for i in range(entries):
        writer.write(
            {
                "frame_index": i,
                "timestamp_s": round(i / 30, 6),
                "result": {
                    "width": 1280,
                    "height": 720,
                    "mean_brightness": round(rng.uniform(16, 235), 3),
                },
            }
        )
    writer.finish({"frames_decoded": entries, "frames_sampled": entries})
    return path, folder / ("results.json" + INDEX_SUFFIX)


async def _seed(bench: BenchStack, entries: int) -> tuple[str, str, int]:
    """The indexed and the unindexed job (their ids) and the document's size."""
    backends = await open_backends(bench.settings, app_id="bench-pages")
    try:
        with tempfile.TemporaryDirectory(prefix="videoq-bench-pages-") as folder:
            document, index = await asyncio.to_thread(_document, Path(folder), entries)
            ids = []
            for indexed in (True, False):
                job_id = uuid.uuid4()
                await backends.repo.create(
                    job_id=job_id,
                    input_path=f"inputs/{job_id}.mp4",
                    pipeline="basic",
                    options={},
                    input_bytes=1,
                )
                key = results_key(job_id)
                size = await backends.store.upload_file(
                    key, document, content_type="application/json"
                )
                if indexed:
                    await backends.store.upload_file(
                        key + INDEX_SUFFIX, index, content_type="application/octet-stream"
                    )
                await backends.repo.claim(job_id, owner="bench", lease_seconds=60)
                await backends.repo.complete(
                    job_id, owner="bench", output_path=key, output_bytes=size
                )
                ids.append(str(job_id))
    finally:
        await backends.close()
    return ids[0], ids[1], size


def _rss_mib(process: psutil.Process) -> float:
    return float(process.memory_info().rss) / 2**20


def _cpu_s(process: psutil.Process) -> float:
    return float(sum(process.cpu_times()[:2]))


async def _read_pages(
    url: str, pid: int, job_id: str, *, entries: int, limit: int, pages: int
) -> Paging:
    process = psutil.Process(pid)
    client = RawHttp(url)
    rng = random.Random(3)
    try:
        for _ in range(3):  # connection, first imports, the store's pool
            assert await client.get(f"/video/results/{job_id}?offset=0&limit={limit}") == 200
        rss_before = peak = _rss_mib(process)
        cpu = _cpu_s(process)
        latencies = []
        for _ in range(pages):
            offset = rng.randrange(0, max(1, entries - limit))
            started = time.perf_counter()
            status = await client.get(f"/video/results/{job_id}?offset={offset}&limit={limit}")
            latencies.append(time.perf_counter() - started)
            assert status == 200, status
            peak = max(peak, _rss_mib(process))
        cpu_ms = (_cpu_s(process) - cpu) / pages * 1e3
        return Paging(percentiles(latencies), cpu_ms, rss_before, peak, _rss_mib(process))
    finally:
        client.close()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    info = describe(bench_services())
    print_description(info)
    print(f"document: {args.entries} entries; pages of {args.limit}")
    with s3_endpoint() as (s3, _):
        async with fresh_stack(s3) as bench:
            indexed, legacy, size = await _seed(bench, args.entries)
            print(f"document size {size / 2**20:.1f} MiB (load {load_average()})", flush=True)
            url = bench.start_api()
            pid = bench.pid("api")
            common = {"entries": args.entries, "limit": args.limit}
            got = {
                "indexed": await _read_pages(url, pid, indexed, pages=args.pages, **common),
                "whole_document": await _read_pages(
                    url, pid, legacy, pages=args.legacy_pages, **common
                ),
            }
    show(
        [
            got["indexed"].row("page via the index"),
            got["whole_document"].row("page via the whole document (no index)"),
        ],
        f"pages of {args.limit} from a {args.entries}-entry document ({size / 2**20:.1f} MiB):",
    )
    fast = got["indexed"]
    growth = fast.rss_mib_after - fast.rss_mib_before
    show(
        [
            Target(
                f"indexed page: api CPU <= {PAGE_GOAL_S * 1e3:.0f} ms",
                f"{fast.api_cpu_ms_per_page:.1f} ms",
                fast.api_cpu_ms_per_page <= PAGE_GOAL_S * 1e3,
            ),
            Target(
                f"indexed page: p50 latency <= {PAGE_GOAL_S * 1e3:.0f} ms",
                f"{fast.latency.p50 * 1e3:.1f} ms (p95 {fast.latency.p95 * 1e3:.1f} ms)",
                fast.latency.p50 <= PAGE_GOAL_S,
            ),
            Target(
                f"api RSS flat over {args.pages} indexed pages (< 5 MiB growth)",
                f"{growth:+.1f} MiB",
                growth < 5,
            ),
        ],
        "targets:",
    )
    return figures_document(
        "pages",
        args,
        info,
        document_bytes=size,
        summary=got,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.pages", description=(__doc__ or "").split("\n\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes (for CI)")
    parser.add_argument("--entries", type=int, help="entries in the document (default 100000)")
    parser.add_argument("--limit", type=int, default=1000, help="entries per page")
    parser.add_argument("--pages", type=int, help="indexed pages read (default 200)")
    parser.add_argument("--legacy-pages", type=int, help="unindexed pages read (default 30)")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args(argv)
    args.entries = args.entries or (10_000 if args.quick else 100_000)
    args.pages = args.pages or (20 if args.quick else 200)
    args.legacy_pages = args.legacy_pages or (5 if args.quick else 30)
    default_s3_credentials()
    write_json(args.json, asyncio.run(run(args)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
