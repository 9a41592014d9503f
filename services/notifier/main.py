"""``videoq-notifier``: deliver the signed webhooks (what the notifier container runs).

On SIGTERM it stops consuming, lets the deliveries in hand end within
``VIDEOQ_SHUTDOWN_GRACE_SECONDS`` and exits; what did not end goes back to
the broker unacked and is delivered again.
"""

from __future__ import annotations

from services.notifier.notifier import Notifier
from shared.backends import Backends
from shared.metrics import Metrics
from shared.runtime import Stop, run_service
from shared.settings import Settings


async def start(settings: Settings, backends: Backends, metrics: Metrics) -> Stop:
    notifier = Notifier(
        settings=settings, repo=backends.repo, broker=backends.broker, metrics=metrics
    )
    await notifier.start()

    async def stop() -> None:
        await notifier.stop(grace_seconds=settings.shutdown_grace_seconds)

    return stop


def main() -> None:
    run_service("notifier", start)


if __name__ == "__main__":
    main()
