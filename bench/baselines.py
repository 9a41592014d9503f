"""The baselines of the queue benchmark: what the same RabbitMQ does with
no videoq around it, measured in the same run.

- **Celery**: a no-op task (acks_late, persistent, no result backend,
  prefetch 1) published N times from this process to one prefork worker
  process (``-c 1``; the app is ``bench/celery_app.py``);
- **aio-pika**: N persistent messages published with confirms (C in flight)
  and consumed by a separate process (prefetch 1, one ack each): the
  broker's own rate for videoq's scheme.

Each on a fresh vhost, on a classic or a quorum queue. The consumer process
of the aio-pika loop is this module's command::

    python -m bench.baselines URL QUEUE COUNT PREFETCH
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import aio_pika

from bench.figures import Percentiles, Row, median, median_percentiles, percentiles
from bench.stack import REPO, wait_for_consumers
from tests.support.services import Services, drop_vhost, new_vhost
from tests.support.stack import terminate

__all__ = ["BaselineRun", "aiopika_round", "celery_round"]


@dataclass(frozen=True)
class BaselineRun:
    """``messages`` through the broker in ``seconds``; latency from publish to delivery."""

    messages: int
    seconds: float
    per_s: float
    latency: Percentiles

    @classmethod
    def of(cls, messages: int, first: float, done_at: float, latencies: list[float]) -> BaselineRun:
        seconds = done_at - first
        return cls(messages, seconds, messages / seconds, percentiles(latencies))

    @classmethod
    def median_of(cls, runs: Sequence[BaselineRun]) -> BaselineRun:
        return cls(
            messages=int(median([r.messages for r in runs])),
            seconds=median([r.seconds for r in runs]),
            per_s=median([r.per_s for r in runs]),
            latency=median_percentiles([r.latency for r in runs]),
        )

    def row(self, name: str, note: str = "") -> Row:
        unit = "tasks/s" if name.startswith("celery") else "msgs/s"
        return Row(name, self.per_s, unit, self.latency, note)


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
) -> BaselineRun:
    from bench.celery_app import QUEUE, make_app

    vhost, url = new_vhost(services)
    tmp = Path(tempfile.mkdtemp(prefix="videoq-bench-celery-"))
    done = tmp / "done.json"
    env = {
        **os.environ,
        "BENCH_CELERY_BROKER": url,
        "BENCH_CELERY_QUEUE_TYPE": queue_type,
        "BENCH_CELERY_CONFIRM": "1" if confirm else "0",
        "BENCH_CELERY_EXPECT": str(count),
        "BENCH_CELERY_DONE": str(done),
    }
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
        terminate([worker], timeout=30)
        drop_vhost(services, vhost)
    return BaselineRun.of(count, first, result["done_at"], result["latencies"])


# --- bare aio-pika ------------------------------------------------------------------------


async def _consume(url: str, queue: str, count: int, prefetch: int) -> None:
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
) -> BaselineRun:
    vhost, url = new_vhost(services)
    queue = "bench.pika"
    try:
        connection = await aio_pika.connect(url)
        async with connection:
            channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
            arguments: dict[str, aio_pika.abc.FieldValue] = (
                {"x-queue-type": "quorum"} if queue_type == "quorum" else {}
            )
            await channel.declare_queue(queue, durable=True, arguments=arguments)
            consumer = await asyncio.create_subprocess_exec(
                *(sys.executable, "-m", "bench.baselines", url, queue, str(count), str(prefetch)),
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
    return BaselineRun.of(count, first, result["done_at"], result["latencies"])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.baselines",
        description="The consumer process of the bare aio-pika baseline (bench.queue_overhead"
        " starts it): consume COUNT messages, then print when and their latencies as JSON.",
    )
    parser.add_argument("url", help="AMQP URL")
    parser.add_argument("queue")
    parser.add_argument("count", type=int)
    parser.add_argument("prefetch", type=int)
    args = parser.parse_args(argv)
    asyncio.run(_consume(args.url, args.queue, args.count, args.prefetch))
    return 0


if __name__ == "__main__":
    sys.exit(main())
