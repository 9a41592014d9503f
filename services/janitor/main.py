"""``videoq-janitor``: the periodic sweeps (what the janitor container runs)."""

from __future__ import annotations

import asyncio

from services.janitor.janitor import Janitor
from shared.backends import Backends
from shared.metrics import Metrics
from shared.runtime import Stop, run_service
from shared.settings import Settings


async def start(settings: Settings, backends: Backends, metrics: Metrics) -> Stop:
    janitor = Janitor(
        settings=settings,
        repo=backends.repo,
        broker=backends.broker,
        store=backends.store,
        metrics=metrics,
    )
    sweeping = asyncio.create_task(janitor.run())

    async def stop() -> None:
        janitor.stop()
        await sweeping

    return stop


def main() -> None:
    run_service("janitor", start)


if __name__ == "__main__":
    main()
