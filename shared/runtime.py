"""Run a long-lived service process: the start-up and shutdown that the
worker and the janitor share.

``run_service`` builds the settings once, configures logging, opens the
backends (waiting for each), serves the ops port (health and metrics),
starts the service, waits for SIGTERM or SIGINT, stops it and closes
everything, in that order. What waiting cannot cure (a taken ops port, a
queue declared with other arguments) is one ``<service>.start_failed`` line
and exit status 1.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable

from shared.backends import Backends, open_backends
from shared.errors import CannotStart
from shared.logs import configure_logging
from shared.metrics import Metrics
from shared.ops_http import serve_ops
from shared.settings import Settings

__all__ = ["Start", "Stop", "run_service", "wait_for_signal"]

#: Stops a started service; returns once it has.
Stop = Callable[[], Awaitable[None]]
#: Starts a service on the opened backends; returns how to stop it.
Start = Callable[[Settings, Backends, Metrics], Awaitable[Stop]]


async def wait_for_signal() -> signal.Signals:
    """Return once SIGTERM or SIGINT arrives."""
    loop = asyncio.get_running_loop()
    received: asyncio.Future[signal.Signals] = loop.create_future()

    def on_signal(sig: signal.Signals) -> None:
        if not received.done():
            received.set_result(sig)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        return await received
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


async def serve(settings: Settings, *, service: str, start: Start) -> None:
    """Run ``service`` on the real backends until a signal asks it to stop."""
    log = logging.getLogger(f"videoq.{service}")
    metrics = Metrics()
    backends = await open_backends(settings, app_id=f"videoq-{service}")
    ops = None
    try:
        if settings.ops_port:
            ops = await serve_ops(
                host="0.0.0.0", port=settings.ops_port, metrics=metrics, ready=backends.check
            )
        stop = await start(settings, backends, metrics)
        sig = await wait_for_signal()
        log.info(f"{service}.signal", extra={"signal": sig.name})
        await stop()
    finally:
        if ops is not None:
            ops.close()
        await backends.close()


def run_service(service: str, start: Start) -> None:
    """The console command of ``service``: settings from the environment, then ``serve``."""
    settings = Settings()
    configure_logging(service=service, fmt=settings.log_format, level=settings.log_level)
    try:
        asyncio.run(serve(settings, service=service, start=start))
    except CannotStart as exc:
        logging.getLogger(f"videoq.{service}").error(
            f"{service}.start_failed", extra={"error": str(exc)}
        )
        raise SystemExit(1) from None
