"""``videoq-worker``: consume the work queue (what the worker container runs).

On SIGTERM it stops consuming, lets the job in hand finish within
``VIDEOQ_SHUTDOWN_GRACE_SECONDS``, hands it back otherwise, and exits 0.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket

from services.worker.worker import Worker
from shared.backends import open_backends
from shared.logs import configure_logging
from shared.metrics import Metrics
from shared.ops_http import OpsPortUnavailable, serve_ops
from shared.pipeline import VideoFilePipelineService, load_registry
from shared.runtime import wait_for_signal
from shared.settings import Settings

log = logging.getLogger("videoq.worker")


def build_analyzer(settings: Settings) -> VideoFilePipelineService:
    return VideoFilePipelineService.from_settings(
        settings,
        registry=load_registry(plugins=settings.plugins),
        max_width=settings.max_video_width,
        max_height=settings.max_video_height,
        max_duration_seconds=settings.max_video_duration_seconds or None,
    )


async def run(settings: Settings) -> None:
    metrics = Metrics()
    worker_id = f"{socket.gethostname()}:{os.getpid()}"
    backends = await open_backends(settings, app_id="videoq-worker")
    ops = None
    try:
        if settings.ops_port:
            ops = await serve_ops(
                host="0.0.0.0", port=settings.ops_port, metrics=metrics, ready=backends.check
            )
        worker = Worker(
            settings=settings,
            repo=backends.repo,
            broker=backends.broker,
            store=backends.store,
            analyzer=build_analyzer(settings),
            metrics=metrics,
            worker_id=worker_id,
        )
        await worker.start()
        sig = await wait_for_signal()
        log.info("worker.signal", extra={"signal": sig.name})
        await worker.stop(grace_seconds=settings.shutdown_grace_seconds)
    finally:
        if ops is not None:
            ops.close()
        await backends.close()


def main() -> None:
    settings = Settings()
    configure_logging(service="worker", fmt=settings.log_format, level=settings.log_level)
    try:
        asyncio.run(run(settings))
    except OpsPortUnavailable as exc:
        log.error("worker.start_failed", extra={"error": str(exc)})
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
