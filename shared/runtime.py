"""Run a long-lived async service until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import signal

__all__ = ["wait_for_signal"]


async def wait_for_signal() -> signal.Signals:
    """Return once SIGTERM or SIGINT arrives."""
    loop = asyncio.get_running_loop()
    received: asyncio.Future[signal.Signals] = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda s=sig: received.done() or received.set_result(s))
    try:
        return await received
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
