"""``videoq-worker``: consume the work queue (what the worker container runs).

On SIGTERM it stops consuming, lets the job in hand finish within
``VIDEOQ_SHUTDOWN_GRACE_SECONDS``, releases it otherwise, and exits 0.
"""

from __future__ import annotations

import os
import socket

from services.worker.worker import Worker
from shared.backends import Backends
from shared.metrics import Metrics
from shared.pipeline import VideoFilePipelineService, load_registry
from shared.runtime import Stop, run_service
from shared.settings import Settings


def build_pipelines(settings: Settings) -> VideoFilePipelineService:
    return VideoFilePipelineService.from_settings(
        settings,
        registry=load_registry(plugins=settings.plugins),
        max_width=settings.max_video_width,
        max_height=settings.max_video_height,
        max_duration_seconds=settings.max_video_duration_seconds or None,
    )


async def start(settings: Settings, backends: Backends, metrics: Metrics) -> Stop:
    worker = Worker(
        settings=settings,
        repo=backends.repo,
        broker=backends.broker,
        store=backends.store,
        pipelines=build_pipelines(settings),
        metrics=metrics,
        worker_id=f"{socket.gethostname()}:{os.getpid()}",
    )
    await worker.start()

    async def stop() -> None:
        await worker.stop(grace_seconds=settings.shutdown_grace_seconds)

    return stop


def main() -> None:
    run_service("worker", start)


if __name__ == "__main__":
    main()
