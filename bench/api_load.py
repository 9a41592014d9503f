"""Benchmark: the api under load, status and results GETs.

    python bench/api_load.py [--quick] [--seconds S] [--concurrency 1,4,16,64]
                             [--rate 200] [--repeat R] [--whatif PATCHES | --baseline REV]
                             [--json PATH]

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
import random
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

if __package__ in (None, ""):
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import asyncpg
import httpx
import psutil

from bench.common import (
    BenchStack,
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
    wait_for_consumers,
    write_json,
)

ROUTES = ("status", "results", "healthz")


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

    async def _connect(self) -> None:
        self._reader, self._writer = await asyncio.open_connection(self._host, self._port)

    async def get(self, path: str) -> int:
        """GET ``path``, read the whole answer; return its status."""
        for attempt in (1, 2):
            if self._writer is None:
                await self._connect()
            assert self._reader is not None and self._writer is not None
            try:
                self._writer.write(f"GET {path} HTTP/1.1\r\nHost: {self._host}\r\n\r\n".encode())
                head = await self._reader.readuntil(b"\r\n\r\n")
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
            await self._reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding") == "chunked":
            while size := int((await self._reader.readline()).strip() or b"0", 16):
                await self._reader.readexactly(size + 2)
            await self._reader.readline()
        if headers.get("connection") == "close":
            self.close()
        return status

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None


async def closed_loop(
    url: str, route: str, ids: list[str], concurrency: int, seconds: float
) -> dict[str, Any]:
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
    return {
        "requests_per_s": len(latencies) / elapsed,
        "latency": percentiles(latencies),
        "errors": errors,
    }


async def fixed_rate(
    url: str, route: str, ids: list[str], rate: float, seconds: float, connections: int = 64
) -> dict[str, Any]:
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
    return {
        "requests_per_s": total / elapsed,
        "latency": percentiles(from_schedule),
        "latency_from_send": percentiles(from_send),
        "errors": errors,
    }


async def one_round(s3: str, clip: bytes, args: argparse.Namespace) -> dict[str, Any]:
    async with fresh_stack(s3) as bench:
        url = bench.start_api()
        bench.start_workers(1)
        await wait_for_consumers(bench.amqp_url, bench.settings.queue_process, 1)
        ids = await _seed(url, bench.database_url, clip, args.jobs)
        bench.stop_workers()
        out: dict[str, Any] = {"closed": {}, "fixed": {}}
        api = psutil.Process(bench.pid("api"))
        for concurrency in args.concurrency:
            for route in ROUTES:
                cpu = sum(api.cpu_times()[:2])
                got = await closed_loop(url, route, ids, concurrency, args.seconds)
                requests = got["requests_per_s"] * args.seconds
                got["api_cpu_ms_per_request"] = (sum(api.cpu_times()[:2]) - cpu) / requests * 1e3
                out["closed"][f"{route} c={concurrency}"] = got
                print(
                    f"  closed loop {route:<8} c={concurrency:<3} {got['requests_per_s']:7.0f} req/s"
                    f"  {got['latency'].ms()}  errors {got['errors']};"
                    f" api CPU {got['api_cpu_ms_per_request']:.2f} ms/request",
                    flush=True,
                )
        for route in ROUTES:
            got = await fixed_rate(url, route, ids, args.rate, args.seconds)
            out["fixed"][route] = got
            print(
                f"  fixed rate  {route:<8} {args.rate:g}/s  {got['requests_per_s']:7.0f} req/s"
                f"  {got['latency'].ms()}  errors {got['errors']}",
                flush=True,
            )
        if args.whatif or args.baseline:
            out["whatif"] = await _whatif(bench, url, ids, args)
    return out


async def _whatif(
    bench: BenchStack, url: str, ids: list[str], args: argparse.Namespace
) -> dict[str, Any]:
    """Two more api processes on the same stack, both under ``bench.trace``:
    the plain one (this checkout, or ``--baseline``'s code) and the patched
    one (``--whatif`` patched in, or this checkout), measured in alternating
    blocks (plain, patched, plain, ...): status GETs at the fixed rate, and
    results GETs in a closed loop of 4 clients with the api's CPU per request."""
    with services_from(bench, source=args.baseline_tree):
        url = bench.start_api(name="api-plain")  # also under the tracer: the same wrappers
    with services_from(bench, whatif=args.whatif):
        patched_url = bench.start_api(name="api-whatif")
    targets = {"plain": (url, "api-plain"), "patched": (patched_url, "api-whatif")}
    lat: dict[str, list[Percentiles]] = {"plain": [], "patched": []}
    results: dict[str, list[dict[str, float]]] = {"plain": [], "patched": []}
    for _ in range(args.blocks):
        for name, (target, proc) in targets.items():
            got = await fixed_rate(target, "status", ids, args.rate, args.seconds / 2)
            lat[name].append(got["latency"])
            api = psutil.Process(bench.pid(proc))
            cpu = sum(api.cpu_times()[:2])
            got = await closed_loop(target, "results", ids, 4, args.seconds / 2)
            requests = got["requests_per_s"] * args.seconds / 2
            results[name].append(
                {
                    "requests_per_s": got["requests_per_s"],
                    "p99": got["latency"].p99,
                    "api_cpu_ms_per_request": (sum(api.cpu_times()[:2]) - cpu) / requests * 1e3,
                }
            )
    out: dict[str, Any] = {name: median_percentiles(runs) for name, runs in lat.items()}
    for name, runs in results.items():
        out[f"results {name}"] = {k: median([r[k] for r in runs]) for k in runs[0]}
    print(
        f"  what-if ({pair_label(args.whatif, args.baseline)}), status at {args.rate:g}/s in {args.blocks} alternating"
        f" blocks: plain {out['plain'].ms()}\n{'':>30}patched {out['patched'].ms()}",
        flush=True,
    )
    for name in targets:
        r = out[f"results {name}"]
        print(
            f"{'':>30}results c=4 {name}: {r['requests_per_s']:.0f} req/s,"
            f" p99 {r['p99'] * 1e3:.1f} ms, api CPU {r['api_cpu_ms_per_request']:.2f} ms/request",
            flush=True,
        )
    return out


async def run(args: argparse.Namespace) -> dict[str, Any]:
    from services.cli.sample import make_sample_mp4

    services = bench_services()
    info = machine(services)
    print_machine(info)
    clip_path = cache_dir() / "clip-160x90-20f.mp4"
    if not clip_path.exists():
        make_sample_mp4(clip_path, seconds=2, fps=10, size=(160, 90))
    clip = clip_path.read_bytes()
    rounds = []
    with s3_endpoint() as (s3, _):
        for number in range(args.repeat):
            print(f"round {number + 1}/{args.repeat} (load {' '.join(map(str, load_average()))})")
            rounds.append(await retrying("round", lambda: one_round(s3, clip, args)))
    print(f"\nmedian of {len(rounds)} round(s):")
    summary: dict[str, Any] = {"closed": {}, "fixed": {}}
    for kind in ("closed", "fixed"):
        for name in rounds[0][kind]:
            rate = median([r[kind][name]["requests_per_s"] for r in rounds])
            lat = median_percentiles([r[kind][name]["latency"] for r in rounds])
            summary[kind][name] = {"requests_per_s": rate, "latency": lat.as_dict()}
            if kind == "closed":
                summary[kind][name]["api_cpu_ms_per_request"] = median(
                    [r[kind][name]["api_cpu_ms_per_request"] for r in rounds]
                )
            label = f"{name} @ {args.rate:g}/s" if kind == "fixed" else name
            print(f"  {kind:<6} {label:<22} {rate:7.0f} req/s  {lat.ms()}")
    if args.whatif or args.baseline:
        summary["whatif"] = {
            "patches": pair_label(args.whatif, args.baseline),
            **{
                name: median_percentiles([r["whatif"][name] for r in rounds]).as_dict()
                for name in ("plain", "patched")
            },
            **{
                f"results {name}": {
                    k: median([r["whatif"][f"results {name}"][k] for r in rounds])
                    for k in rounds[0]["whatif"][f"results {name}"]
                }
                for name in ("plain", "patched")
            },
        }
        w = summary["whatif"]
        print(
            f"  what-if ({pair_label(args.whatif, args.baseline)}) status @ {args.rate:g}/s: p50/p99 plain"
            f" {w['plain']['p50'] * 1e3:.1f}/{w['plain']['p99'] * 1e3:.1f} ms,"
            f" patched {w['patched']['p50'] * 1e3:.1f}/{w['patched']['p99'] * 1e3:.1f} ms"
        )
    status_p99 = summary["fixed"]["status"]["latency"]["p99"]
    ok = status_p99 < 0.020
    print("\ntargets:")
    print(
        f"  status GET p99 < 20 ms at {args.rate:g} req/s: {status_p99 * 1e3:.1f} ms"
        f"  {'met' if ok else 'MISSED'}"
    )
    return {
        "benchmark": "api_load",
        "args": {k: str(v) for k, v in vars(args).items()},
        "machine": info,
        "load_average_end": load_average(),
        "summary": summary,
        "rounds": _plain(rounds),
    }


def _plain(value: Any) -> Any:
    if isinstance(value, Percentiles):
        return value.as_dict()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
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
    args = parser.parse_args()
    args.seconds = args.seconds or (1.0 if args.quick else 10.0)
    levels = args.concurrency or ("4" if args.quick else "1,4,16,64")
    args.concurrency = [int(x) for x in levels.split(",")]
    args.repeat = args.repeat or (1 if args.quick else 3)
    if args.quick:
        args.jobs = min(args.jobs, 3)
        args.rate = min(args.rate, 50.0)
    if args.whatif and args.baseline:
        parser.error("--whatif and --baseline are exclusive")
    with source_tree(args.baseline) as args.baseline_tree:
        write_json(args.json, asyncio.run(run(args)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
