"""``videoq-janitor``: the periodic sweeps (what the janitor container runs)."""

from __future__ import annotations

import asyncio
import logging

from services.janitor.janitor import Janitor
from shared.backends import open_backends
from shared.logs import configure_logging
from shared.metrics import Metrics
from shared.ops_http import OpsPortUnavailable, serve_ops
from shared.runtime import wait_for_signal
from shared.settings import Settings

log = logging.getLogger("videoq.janitor")


async def run(settings: Settings) -> None:
    metrics = Metrics()
    backends = await open_backends(settings, app_id="videoq-janitor")
    ops = None
    try:
        if settings.ops_port:
            ops = await serve_ops(
                host="0.0.0.0", port=settings.ops_port, metrics=metrics, ready=backends.check
            )
        janitor = Janitor(
            settings=settings, repo=backends.repo, broker=backends.broker, metrics=metrics
        )
        sweeping = asyncio.create_task(janitor.run())
        sig = await wait_for_signal()
        log.info("janitor.signal", extra={"signal": sig.name})
        janitor.stop()
        await sweeping
    finally:
        if ops is not None:
            ops.close()
        await backends.close()


def main() -> None:
    settings = Settings()
    configure_logging(service="janitor", fmt=settings.log_format, level=settings.log_level)
    try:
        asyncio.run(run(settings))
    except OpsPortUnavailable as exc:
        log.error("janitor.start_failed", extra={"error": str(exc)})
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
