"""Benchmark: the api under load, status and results GETs.

    python -m bench.api_load [--quick] [--seconds S] [--concurrency 1,4,16,64]
        [--rate 200] [--repeat R] [--whatif PATCHES | --baseline REV] [--json PATH]

On the real stack (``videoq-api`` on RabbitMQ, PostgreSQL and S3, a fresh
vhost, database and bucket), a worker first completes a few jobs (the
``basic`` pipeline on a 20-frame clip, so each results document is a few
KB), then is stopped; an in-process async load generator (httpx) then asks:

- *closed loop*: for each concurrency level, C clients each sending the next
  GET as soon as the last one answered, for S seconds per route: requests/s
  and latency p50/p99 per route (``/healthz`` beside them: the floor of the
  HTTP stack and of this load generator, no database);
- *fixed rate*: GETs started at ``--rate`` per second (default 200) whatever
  the answers, for S seconds: latency measured from each request's scheduled
  start (so a stall counts for every request it delays), p50/p99, and whether
  status p99 < 20 ms.

The load generator runs on the same machine (2 cores here), so its own CPU
time is part of every latency; the ``/healthz`` row shows how much. It speaks
HTTP/1.1 over keep-alive asyncio streams itself (``RawHttp``), since httpx's
own CPU cost per request would be most of what is measured.
Each round's figures, then the median of ``--repeat`` rounds (default 3).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import functools
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx
import psutil  # type: ignore[import-untyped]

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
from bench.inputs import small_clip
from bench.machine import describe, figures_document, load_average, print_description
from bench.stack import (
    BenchStack,
    Code,
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

ROUTES = ("status", "results", "healthz")


@dataclass(frozen=True)
class Load:
    """GETs of one route under one load, as the client saw them."""

    requests_per_s: float
    latency: Percentiles
    errors: int
    #: At a fixed rate: ``latency`` is from each request's scheduled start, this from its send.
    latency_from_send: Percentiles | None = None
    #: In a closed loop: the api process's CPU time per request.
    api_cpu_ms_per_request: float | None = None

    @classmethod
    def median_of(cls, loads: Sequence[Load]) -> Load:
        """Medians over rounds; the errors of all of them."""
        cpu = [x.api_cpu_ms_per_request for x in loads if x.api_cpu_ms_per_request is not None]
        return cls(
            requests_per_s=median([x.requests_per_s for x in loads]),
            latency=median_percentiles([x.latency for x in loads]),
            errors=sum(x.errors for x in loads),
            api_cpu_ms_per_request=median(cpu) if cpu else None,
        )

    def row(self, label: str) -> Row:
        note = f"errors {self.errors}"
        if self.api_cpu_ms_per_request is not None:
            note += f"; api CPU {self.api_cpu_ms_per_request:.2f} ms/request"
        return Row(label, self.requests_per_s, "req/s", self.latency, note)


@dataclass(frozen=True)
class PairSide:
    """One api of a what-if pair: medians over the alternating blocks."""

    #: Status GETs at the fixed rate.
    status: Percentiles
    #: Results GETs, 4 clients in a closed loop.
    results_per_s: float
    results_p99: float
    api_cpu_ms_per_request: float

    @classmethod
    def median_of(cls, sides: Sequence[PairSide]) -> PairSide:
        return cls(
            status=median_percentiles([s.status for s in sides]),
            results_per_s=median([s.results_per_s for s in sides]),
            results_p99=median([s.results_p99 for s in sides]),
            api_cpu_ms_per_request=median([s.api_cpu_ms_per_request for s in sides]),
        )

    def rows(self, name: str, rate: float) -> list[Row]:
        return [
            Row(f"{name}: status @ {rate:g}/s", latency=self.status),
            Row(
                f"{name}: results c=4",
                self.results_per_s,
                "req/s",
                note=f"p99 {self.results_p99 * 1e3:.1f} ms,"
                f" api CPU {self.api_cpu_ms_per_request:.2f} ms/request",
            ),
        ]


def _pair_json(pair: dict[str, PairSide]) -> dict[str, Any]:
    """A what-if pair under the names of the JSON figures."""
    out: dict[str, Any] = {name: side.status for name, side in pair.items()}
    for name, side in pair.items():
        out[f"results {name}"] = {
            "requests_per_s": side.results_per_s,
            "p99": side.results_p99,
            "api_cpu_ms_per_request": side.api_cpu_ms_per_request,
        }
    return out


def _path(route: str, job_id: str) -> str:
    return "/healthz" if route == "healthz" else f"/video/{route}/{job_id}"


async def _seed(url: str, database_url: str, clip: bytes, count: int) -> list[str]:
    """``count`` completed jobs to read."""
    async with httpx.AsyncClient(base_url=url, timeout=60) as http:
        ids = [await submit_clip(http, clip, pipeline="basic") for _ in range(count)]
    db = await asyncpg.connect(database_url)
    try:
        deadline = time.monotonic() + 120
        while await db.fetchval(
            "SELECT count(*) FROM jobs WHERE status = 'completed' AND job_id = ANY($1::uuid[])", ids
        ) < len(ids):
            if time.monotonic() > deadline:
                raise TimeoutError("seed jobs did not complete")
            await asyncio.sleep(0.2)
    finally:
        await db.close()
    return ids


class RawHttp:
    """One keep-alive HTTP/1.1 connection on asyncio streams, GETs only.

    A few microseconds of CPU per request where httpx spends about a
    millisecond: on a 2-core machine the load generator must not be what
    is measured.
    """

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self._host, self._port = parts.hostname or "127.0.0.1", parts.port or 80
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def _connection(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._reader is None or self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(self._host, self._port)
        return self._reader, self._writer

    async def get(self, path: str) -> int:
        """GET ``path``, read the whole answer; return its status."""
        for attempt in (1, 2):
            reader, writer = await self._connection()
            try:
                writer.write(f"GET {path} HTTP/1.1\r\nHost: {self._host}\r\n\r\n".encode())
                head = await reader.readuntil(b"\r\n\r\n")
                break
            except (ConnectionError, asyncio.IncompleteReadError):
                self.close()  # the server closed an idle connection: once more
                if attempt == 2:
                    raise
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {
            k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:] if h)
        }
        if "content-length" in headers:
            await reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding") == "chunked":
            while size := int((await reader.readline()).strip() or b"0", 16):
                await reader.readexactly(size + 2)
            await reader.readline()
        if headers.get("connection") == "close":
            self.close()
        return status

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None


async def closed_loop(
    url: str, route: str, ids: list[str], concurrency: int, seconds: float
) -> Load:
    latencies: list[float] = []
    errors = 0
    clients = [RawHttp(url) for _ in range(concurrency)]
    # Open the connections first: the figures are for warm connections.
    await asyncio.gather(*(c.get("/healthz") for c in clients))
    stop = time.perf_counter() + seconds

    async def lane(client: RawHttp) -> None:
        nonlocal errors
        while time.perf_counter() < stop:
            started = time.perf_counter()
            status = await client.get(_path(route, random.choice(ids)))
            latencies.append(time.perf_counter() - started)
            if status != 200:
                errors += 1

    began = time.perf_counter()
    try:
        await asyncio.gather(*(lane(c) for c in clients))
    finally:
        for client in clients:
            client.close()
    elapsed = time.perf_counter() - began
    return Load(len(latencies) / elapsed, percentiles(latencies), errors)


async def fixed_rate(
    url: str, route: str, ids: list[str], rate: float, seconds: float, connections: int = 64
) -> Load:
    """Requests started on a schedule; latency from each one's scheduled start
    (waiting for a free connection counts)."""
    from_schedule: list[float] = []
    from_send: list[float] = []
    errors = 0
    idle: asyncio.Queue[RawHttp] = asyncio.Queue()
    clients = [RawHttp(url) for _ in range(connections)]
    await asyncio.gather(*(c.get("/healthz") for c in clients))
    for client in clients:
        idle.put_nowait(client)

    async def one(scheduled: float) -> None:
        nonlocal errors
        client = await idle.get()
        sent = time.perf_counter()
        try:
            status = await client.get(_path(route, random.choice(ids)))
        finally:
            idle.put_nowait(client)
        done = time.perf_counter()
        from_schedule.append(done - scheduled)
        from_send.append(done - sent)
        if status != 200:
            errors += 1

    total = int(rate * seconds)
    start = time.perf_counter() + 0.05
    tasks = []
    try:
        for i in range(total):
            scheduled = start + i / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(scheduled)))
        await asyncio.gather(*tasks)
    finally:
        for client in clients:
            client.close()
    elapsed = time.perf_counter() - start
    return Load(
        total / elapsed,
        percentiles(from_schedule),
        errors,
        latency_from_send=percentiles(from_send),
    )


def _api_cpu(pid: int) -> float:
    """CPU seconds (user + system) the process has used so far."""
    return float(sum(psutil.Process(pid).cpu_times()[:2]))


async def closed_loop_with_cpu(
    bench: BenchStack,
    proc: str,
    url: str,
    route: str,
    ids: list[str],
    concurrency: int,
    seconds: float,
) -> Load:
    """``closed_loop``, with the api process ``proc``'s CPU time per request."""
    cpu = _api_cpu(bench.pid(proc))
    got = await closed_loop(url, route, ids, concurrency, seconds)
    requests = got.requests_per_s * seconds
    cpu_ms = (_api_cpu(bench.pid(proc)) - cpu) / requests * 1e3
    return dataclasses.replace(got, api_cpu_ms_per_request=cpu_ms)


async def one_round(s3: str, clip: bytes, args: argparse.Namespace) -> dict[str, Any]:
    async with fresh_stack(s3) as bench:
        url = bench.start_api()
        bench.start_workers(1)
        await wait_for_consumers(bench.amqp_url, bench.settings.queue_process, 1)
        ids = await _seed(url, bench.database_url, clip, args.jobs)
        bench.stop_workers()
        out: dict[str, Any] = {"closed": {}, "fixed": {}}
        for concurrency in args.concurrency:
            for route in ROUTES:
                got = await closed_loop_with_cpu(
                    bench, "api", url, route, ids, concurrency, args.seconds
                )
                out["closed"][f"{route} c={concurrency}"] = got
                show([got.row(f"closed loop {route:<8} c={concurrency}")])
        for route in ROUTES:
            got = await fixed_rate(url, route, ids, args.rate, args.seconds)
            out["fixed"][route] = got
            show([got.row(f"fixed rate  {route:<8} @ {args.rate:g}/s")])
        if args.whatif or args.baseline:
            out["whatif"] = await _whatif(bench, ids, args)
    return out


async def _whatif(
    bench: BenchStack, ids: list[str], args: argparse.Namespace
) -> dict[str, PairSide]:
    """Two more api processes on the same stack, both under ``bench.trace``:
    the plain one (this checkout, or ``--baseline``'s code) and the patched
    one (``--whatif`` patched in, or this checkout), measured in alternating
    blocks (plain, patched, plain, ...): status GETs at the fixed rate, and
    results GETs in a closed loop of 4 clients with the api's CPU per request."""
    # The plain one under the tracer too: the same wrappers.
    plain = bench.start_api("api-plain", code=Code(source=args.baseline_tree))
    patched = bench.start_api("api-whatif", code=Code(whatif=args.whatif))
    targets = {"plain": (plain, "api-plain"), "patched": (patched, "api-whatif")}
    blocks: dict[str, list[PairSide]] = {"plain": [], "patched": []}
    for _ in range(args.blocks):
        for name, (target, proc) in targets.items():
            status = await fixed_rate(target, "status", ids, args.rate, args.seconds / 2)
            results = await closed_loop_with_cpu(
                bench, proc, target, "results", ids, 4, args.seconds / 2
            )
            assert results.api_cpu_ms_per_request is not None
            blocks[name].append(
                PairSide(
                    status.latency,
                    results.requests_per_s,
                    results.latency.p99,
                    results.api_cpu_ms_per_request,
                )
            )
    pair = {name: PairSide.median_of(sides) for name, sides in blocks.items()}
    rows = [row for name, side in pair.items() for row in side.rows(name, args.rate)]
    label = pair_label(args.whatif, args.baseline)
    show(rows, f"what-if ({label}), {args.blocks} alternating blocks:")
    return pair


async def run(args: argparse.Namespace) -> dict[str, Any]:
    services = bench_services()
    info = describe(services)
    print_description(info)
    clip = small_clip().read_bytes()
    rounds = []
    with s3_endpoint() as (s3, _):
        for number in range(args.repeat):
            print(f"round {number + 1}/{args.repeat} (load {' '.join(map(str, load_average()))})")
            rounds.append(await retrying("round", functools.partial(one_round, s3, clip, args)))
    summary: dict[str, Any] = {"closed": {}, "fixed": {}}
    rows = []
    for kind in ("closed", "fixed"):
        for name in rounds[0][kind]:
            got = Load.median_of([r[kind][name] for r in rounds])
            summary[kind][name] = {"requests_per_s": got.requests_per_s, "latency": got.latency}
            if got.api_cpu_ms_per_request is not None:
                summary[kind][name]["api_cpu_ms_per_request"] = got.api_cpu_ms_per_request
            label = (
                f"closed loop {name}"
                if kind == "closed"
                else f"fixed rate  {name} @ {args.rate:g}/s"
            )
            rows.append(got.row(label))
    if args.whatif or args.baseline:
        pair = {
            name: PairSide.median_of([r["whatif"][name] for r in rounds])
            for name in ("plain", "patched")
        }
        label = pair_label(args.whatif, args.baseline)
        summary["whatif"] = {"patches": label, **_pair_json(pair)}
        rows += [
            row for name, side in pair.items() for row in side.rows(f"what-if {name}", args.rate)
        ]
    show(rows, f"median of {len(rounds)} round(s):")
    status_p99 = summary["fixed"]["status"]["latency"].p99
    show(
        [
            Target(
                f"status GET p99 < 20 ms at {args.rate:g} req/s",
                f"{status_p99 * 1e3:.1f} ms",
                status_p99 < 0.020,
            )
        ],
        "targets:",
    )
    for r in rounds:
        if "whatif" in r:
            r["whatif"] = _pair_json(r["whatif"])
    return figures_document(
        "api_load",
        args,
        info,
        summary=summary,
        rounds=rounds,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.api_load", description=(__doc__ or "").split("\n\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes (for CI)")
    parser.add_argument("--seconds", type=float, help="seconds per measurement")
    parser.add_argument("--concurrency", help="comma-separated levels (default 1,4,16,64)")
    parser.add_argument("--rate", type=float, default=200.0, help="fixed-rate requests/s")
    parser.add_argument("--jobs", type=int, default=10, help="completed jobs to read")
    parser.add_argument("--repeat", type=int, help="rounds (the median is reported)")
    parser.add_argument(
        "--whatif",
        default="",
        help="also measure an api with these what-ifs patched in (bench/trace.py)",
    )
    parser.add_argument(
        "--baseline",
        help="a git revision: also measure an api running its code beside this checkout's",
    )
    parser.add_argument("--blocks", type=int, default=4, help="alternating what-if blocks")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args(argv)
    args.seconds = args.seconds or (1.0 if args.quick else 10.0)
    levels = args.concurrency or ("4" if args.quick else "1,4,16,64")
    args.concurrency = [int(x) for x in levels.split(",")]
    args.repeat = args.repeat or (1 if args.quick else 3)
    if args.quick:
        args.jobs = min(args.jobs, 3)
        args.rate = min(args.rate, 50.0)
    if args.whatif and args.baseline:
        parser.error("--whatif and --baseline are exclusive")
    default_s3_credentials()
    with source_tree(args.baseline) as args.baseline_tree:
        write_json(args.json, asyncio.run(run(args)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
