"""The Celery app of the queue benchmark's baseline (``bench/baselines.py``):
a no-op task, acks_late, persistent messages, no result backend, prefetch 1
(what Celery's docs advise with acks_late).

Configured from the environment, since the worker is its own process
(``celery -A bench.celery_app worker``):

- ``BENCH_CELERY_BROKER``: the AMQP URL (a fresh vhost)
- ``BENCH_CELERY_QUEUE_TYPE``: ``classic`` (Celery's default) or ``quorum``
- ``BENCH_CELERY_CONFIRM``: ``1`` to publish with publisher confirms
- ``BENCH_CELERY_EXPECT``, ``BENCH_CELERY_DONE``: after that many tasks the
  worker writes ``{"done_at": <epoch s>, "latencies": [...]}`` to that file
  (latency = task start minus the publish time passed as its argument)
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from celery import Celery  # type: ignore[import-untyped]
from kombu.entity import Queue

QUEUE = "bench.celery"


def make_app(broker: str, *, queue_type: str = "classic", confirm: bool = False) -> Celery:
    """The Celery app, as the worker and the publisher both configure it."""
    celery = Celery("videoq_bench", broker=broker)
    arguments = {"x-queue-type": "quorum"} if queue_type == "quorum" else {}
    celery.conf.update(
        task_acks_late=True,
        task_default_delivery_mode="persistent",
        task_ignore_result=True,
        result_backend=None,
        worker_prefetch_multiplier=1,
        task_default_queue=QUEUE,
        task_queues=[
            Queue(  # type: ignore[no-untyped-call]
                QUEUE, routing_key=QUEUE, queue_arguments=arguments, durable=True
            )
        ],
        broker_transport_options={"confirm_publish": confirm},
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
    )
    return celery


app = make_app(
    os.environ.get("BENCH_CELERY_BROKER", "amqp://"),
    queue_type=os.environ.get("BENCH_CELERY_QUEUE_TYPE", "classic"),
    confirm=os.environ.get("BENCH_CELERY_CONFIRM") == "1",
)

_state: dict[str, list[float]] = {"latencies": []}


@app.task(name="bench.noop")  # type: ignore[untyped-decorator]
def noop(sent_at: float) -> None:
    latencies = _state["latencies"]
    latencies.append(time.time() - sent_at)
    if len(latencies) == int(os.environ.get("BENCH_CELERY_EXPECT", "0")):
        done = Path(os.environ["BENCH_CELERY_DONE"])
        part = done.with_suffix(".part")
        part.write_text(json.dumps({"done_at": time.time(), "latencies": latencies}))
        part.replace(done)
