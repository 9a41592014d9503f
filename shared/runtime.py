"""Run a long-lived async service until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import signal

__all__ = ["wait_for_signal"]


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
