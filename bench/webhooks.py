"""Benchmark: webhook deliveries per second, through RabbitMQ, to a loopback receiver.

    python -m bench.webhooks [--quick] [--webhooks N] [--notifiers K]
        [--concurrency C] [--tier-seconds S] [--json PATH]

On a fresh vhost and database (``bench.stack``), K ``videoq-notifier``
processes (``VIDEOQ_WEBHOOK_CONCURRENCY`` = C each) and a receiver on
127.0.0.1 (a threaded stdlib HTTP server that verifies nothing: the
signature's cost is the sender's). N finished jobs with a ``callback_url``
are made in the database, then their events are published as the janitor
does (``outbox.publish_owed_events``), and the clock runs from the first
attempt the receiver sees to the last 2xx it sends (the notifiers start
after every event is queued). Two phases:

- **direct**: every first attempt succeeds: N deliveries;
- **through the retry queue**: the receiver answers 500 to the first attempt
  of each webhook and 204 to the second, so each goes through the first
  retry tier (its TTL set to ``--tier-seconds``, 0.5 s by default) and back:
  N deliveries of 2 attempts, each attempt logged.

Prints deliveries/s and attempts/s, and the notifiers' CPU milliseconds per
attempt (their start-up included). Every attempt opens a new connection (no keep-alive: the address
is checked per attempt). The machine may be shared: say so with the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped]

from bench.machine import describe, load_average, print_description
from bench.stack import bench_services, wait_for_consumers
from shared import outbox
from shared.broker import AmqpBroker
from shared.repository import connect_repository
from shared.settings import Settings
from tests.support.services import drop_vhost, new_vhost
from tests.support.stack import Stack
from tools.scratch_db import scratch_database

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


class _Receiver:
    """Counts webhooks; with ``fail_first``, answers 500 to each id's first attempt."""

    def __init__(self, *, fail_first: bool) -> None:
        self.fail_first = fail_first
        self.seen: set[str] = set()
        self.accepted = 0
        self.attempts = 0
        self.last_accept = 0.0
        self.first_attempt = 0.0
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.expected = 0

    def answer(self, webhook_id: str) -> int:
        with self.lock:
            self.attempts += 1
            self.first_attempt = self.first_attempt or time.monotonic()
            if self.fail_first and webhook_id not in self.seen:
                self.seen.add(webhook_id)
                return 500
            self.accepted += 1
            self.last_accept = time.monotonic()
            if self.accepted >= self.expected:
                self.done.set()
            return 204


@contextmanager
def _serve(receiver: _Receiver) -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            status = receiver.answer(self.headers.get("webhook-id", ""))
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.send_header("Connection", "close")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.request_queue_size = 1024
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    finally:
        server.shutdown()
        server.server_close()


async def _phase(args: argparse.Namespace, *, fail_first: bool) -> dict[str, Any]:
    services = bench_services()
    vhost, amqp_url = new_vhost(services)
    try:
        async with scratch_database(services.database_url, prefix="videoq_bench") as database_url:
            return await _run(args, amqp_url, database_url, fail_first=fail_first)
    finally:
        drop_vhost(services, vhost)


async def _run(
    args: argparse.Namespace, amqp_url: str, database_url: str, *, fail_first: bool
) -> dict[str, Any]:
    receiver = _Receiver(fail_first=fail_first)
    receiver.expected = args.webhooks
    logs = Path(tempfile.mkdtemp(prefix="videoq-bench-webhooks-"))
    settings = Settings(
        amqp_url=amqp_url,
        database_url=database_url,
        storage_url=f"file://{logs / 'store'}",
        ops_port=0,
        webhook_secrets=f"bench:{SECRET}",
        webhook_retry_delays=(args.tier_seconds, args.tier_seconds * 2),
        webhook_allow_http=True,
        webhook_allow_networks=("127.0.0.0/8",),
        webhook_concurrency=args.concurrency,
        log_level="WARNING",
    )
    repo = await connect_repository(database_url, migrate=True)
    broker = await AmqpBroker.connect(settings, app_id="videoq-bench")
    stack = Stack(settings, logs)
    try:
        with _serve(receiver) as url:
            for number in range(args.webhooks):
                job_id = uuid.uuid4()
                await repo.create(
                    job_id=job_id,
                    input_path=f"inputs/{job_id}.mp4",
                    pipeline="noop",
                    options={},
                    input_bytes=1,
                    client_id="bench",
                    tag=f"n{number}",
                    callback_url=url,
                )
                await repo.claim(job_id, owner="bench", lease_seconds=60)
                await repo.complete(job_id, owner="bench", output_path="results/x.json")
            # All the events first, as the janitor publishes them (the pending
            # and running ones too: nobody listens, they are dropped), so the
            # clock measures the notifiers, not the outbox.
            while await outbox.publish_owed_events(broker, repo, limit=1000):
                pass
            for index in range(args.notifiers):
                stack.start_notifier(f"notifier-{index}")
            await wait_for_consumers(amqp_url, settings.queue_webhooks, args.notifiers)
            pids = [p.pid for p in stack.procs.values()]
            finished = await asyncio.to_thread(receiver.done.wait, 600)
            # From the first attempt to the last 2xx; CPU includes start-up.
            elapsed = receiver.last_accept - receiver.first_attempt
            cpu = sum(_cpu(pid) for pid in pids)
    finally:
        stack.stop()
        await broker.close()
        await repo.close()
    if not finished:
        raise SystemExit(f"only {receiver.accepted} of {args.webhooks} webhooks arrived")
    return {
        "phase": "through the retry queue" if fail_first else "direct",
        "webhooks": args.webhooks,
        "attempts": receiver.attempts,
        "seconds": round(elapsed, 2),
        "deliveries_per_s": round(args.webhooks / elapsed, 1),
        "attempts_per_s": round(receiver.attempts / elapsed, 1),
        "notifier_cpu_ms_per_attempt": round(1000 * cpu / receiver.attempts, 2),
        "notifiers": args.notifiers,
        "concurrency": args.concurrency,
        "tier_seconds": args.tier_seconds if fail_first else None,
    }


def _cpu(pid: int) -> float:
    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.NoSuchProcess:
        return 0.0
    return float(times.user + times.system)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="50 webhooks (the test suite's run)")
    parser.add_argument("--webhooks", type=int, default=1000)
    parser.add_argument("--notifiers", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--tier-seconds", type=float, default=0.5)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.quick:
        args.webhooks = 50
    info = describe(bench_services())
    print_description(info)
    results = [asyncio.run(_phase(args, fail_first=flag)) for flag in (False, True)]
    for result in results:
        print(
            f"  {result['phase']:<26} {result['webhooks']:>6} webhooks {result['attempts']:>6}"
            f" attempts  {result['deliveries_per_s']:>7.1f} deliveries/s"
            f"  {result['attempts_per_s']:>7.1f} attempts/s"
            f"  notifier CPU {result['notifier_cpu_ms_per_attempt']:.2f} ms/attempt"
        )
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in load_average())}")
    if args.json:
        summary = {r["phase"]: r["deliveries_per_s"] for r in results}
        document = {"machine": info, "summary": summary, "phases": results}
        args.json.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
