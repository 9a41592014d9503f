"""The peer's Celery app and its task (``celery -A bench.peer.tasks worker``).

RabbitMQ as videoq uses it: a durable quorum queue, persistent messages
published with confirms, ``acks_late`` with prefetch 1 and
``task_reject_on_worker_lost`` (a job whose worker dies is redelivered, not
dropped). Transient S3 and database errors are retried by Celery with
backoff; a video that does not decode fails the job.
"""

from __future__ import annotations

import functools
import os
import tempfile
from pathlib import Path
from uuid import UUID

import psycopg
from botocore.exceptions import BotoCoreError, ClientError
from celery import Celery  # type: ignore[import-untyped]
from kombu.entity import Queue

from bench.peer.common import BUCKET, db, s3
from shared.errors import VideoUnreadable
from shared.pipeline.errors import VideoLimitExceeded
from shared.pipeline.registry import load_registry
from shared.pipeline.service import VideoFilePipelineService

__all__ = ["QUEUE", "analyze", "app"]

QUEUE = "peer.jobs"

app = Celery("peer", broker=os.environ.get("PEER_AMQP_URL", "amqp://"))
app.conf.update(
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_ignore_result=True,
    task_default_delivery_mode="persistent",
    task_default_queue=QUEUE,
    task_queues=[
        Queue(  # type: ignore[no-untyped-call]
            QUEUE, routing_key=QUEUE, queue_arguments={"x-queue-type": "quorum"}, durable=True
        )
    ],
    broker_transport_options={"confirm_publish": True},
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
    worker_send_task_events=False,
)


@functools.cache
def _service() -> VideoFilePipelineService:
    plugins = [p for p in os.environ.get("PEER_PLUGINS", "").split(",") if p]
    return VideoFilePipelineService(registry=load_registry(plugins=plugins))


def _finish(job_id: str, status: str, *, results_key: str | None = None, error: str = "") -> None:
    with db().connection() as conn:
        conn.execute(
            "UPDATE jobs SET status = %s, results_key = %s, error = %s, updated_at = now()"
            " WHERE job_id = %s",
            (status, results_key, error or None, job_id),
        )


@app.task(  # type: ignore[untyped-decorator]
    name="peer.analyze",
    autoretry_for=(BotoCoreError, ClientError, psycopg.OperationalError),
    retry_backoff=True,
    retry_backoff_max=30,
    max_retries=5,
)
def analyze(job_id: str) -> None:
    with db().connection() as conn:
        row = conn.execute(
            "UPDATE jobs SET status = 'running', attempts = attempts + 1, updated_at = now()"
            " WHERE job_id = %s RETURNING pipeline, frame_stride, input_key",
            (job_id,),
        ).fetchone()
    if row is None:
        return
    pipeline, frame_stride, input_key = row
    with tempfile.TemporaryDirectory(prefix="peer-") as tmp:
        video, results = Path(tmp) / "input.mp4", Path(tmp) / "results.json"
        s3().download_file(BUCKET, input_key, str(video))
        try:
            _service().analyze(
                video, results, job_id=UUID(job_id), pipeline=pipeline, frame_stride=frame_stride
            )
        except (VideoUnreadable, VideoLimitExceeded) as exc:
            _finish(job_id, "failed", error=str(exc))
            return
        key = f"results/{job_id}.json"
        s3().upload_file(str(results), BUCKET, key, ExtraArgs={"ContentType": "application/json"})
    _finish(job_id, "completed", results_key=key)
